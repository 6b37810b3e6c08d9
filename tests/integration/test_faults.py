"""Fault tests on the real stack through the local Kafka-trigger host, instances as processes.

With our settings every input ends as a settlement or a dead letter (duplicates possible, never losses), except
where the extension itself gives a batch up: a batch that always fails is skipped after its retries (logged),
and one whose retries outlast max.poll.interval.ms is never skipped, so its partition stalls. With the
extension's defaults a batch that fails one execution is committed past and lost.
"""

from __future__ import annotations

import pytest

from localrun.faults import SCENARIOS, run_scenario

pytestmark = pytest.mark.integration
NEEDS_OWNED_STACK = {"broker restart mid-run", "registry unavailable 3 s, then back"}
GIVEN_UP_BY_THE_EXTENSION = {"a batch that always fails", "... and whose retries outlast max.poll.interval.ms"}


def _run(stack, name: str, ours: bool):  # type: ignore[no-untyped-def]
    if name in NEEDS_OWNED_STACK and not stack.owned:
        pytest.skip("needs control of the local stack's processes")
    return run_scenario(name, stack.bootstrap, stack.registry_url, ours=ours, **SCENARIOS[name])


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n not in GIVEN_UP_BY_THE_EXTENSION])
def test_no_record_is_lost_with_our_settings(stack, name: str) -> None:
    outcome = _run(stack, name, ours=True)
    assert outcome.finished and outcome.lost == 0, outcome
    assert outcome.settled + outcome.dead_lettered - outcome.duplicates == outcome.inputs, outcome
    if name == "every poison kind in the stream":
        assert outcome.dead_lettered == 15
    if name == "1.5 MB values and 1 MB keys in the stream":
        assert (outcome.dead_lettered, outcome.duplicates, outcome.failed_invocations) == (6, 0, 0)
    if name == "function raises on 6 invocations":
        # one execution is 1 + 4 @app.retry invocations; the immediate re-run's second invocation succeeds
        assert outcome.failed_invocations == 6 and outcome.skipped_records == 0


def test_the_extension_default_loses_a_batch_that_fails_one_execution(stack) -> None:
    outcome = _run(stack, "function raises on 6 invocations", ours=False)
    assert outcome.lost == outcome.skipped_records == 50, outcome  # one batch of maxBatchSize 50
    assert outcome.settled + outcome.dead_lettered + outcome.lost == outcome.inputs


def test_a_batch_that_always_fails_is_skipped_after_both_retry_loops(stack) -> None:
    ours = _run(stack, "a batch that always fails", ours=True)
    assert ours.finished and ours.lost == ours.skipped_records == 50, ours
    assert ours.failed_invocations == (2 + 1) * (4 + 1)  # (maxRetries + 1) x (@app.retry count + 1)


def test_retries_past_max_poll_interval_stall_the_partition_instead_of_skipping(stack) -> None:
    outcome = _run(stack, "... and whose retries outlast max.poll.interval.ms", ours=True)
    # Given up and stored after both loops, but the evicted member's commit is refused: after each rejoin the
    # same batch comes back, and the stream never drains.
    assert not outcome.finished and outcome.lost > 0, outcome
    assert outcome.skipped_records > 0, outcome
