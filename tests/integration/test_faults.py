"""Fault tests on the real stack through the local Kafka-trigger host, instances as processes.

At-least-once with our settings: every input ends as a settlement or a dead letter (duplicates possible, never
losses), except where the extension itself gives a batch up: a batch that always fails is skipped after its
retries (logged), and one whose retries outlast max.poll.interval.ms is never skipped, so its partition stalls.
With the extension's defaults a batch that fails one execution is committed past and lost.

Exactly-once: a read_committed reader sees every input exactly once in every scenario, including those where
the extension skips a batch (the ledger repairs the range from the source); only the stalled partition stays
short, as it must (nothing is skipped, so nothing after it is read).
"""

from __future__ import annotations

import pytest

from localrun.experiments.faults import SCENARIOS
from localrun.experiments.scenario import VISIBLE_BOUND_S, liveness_met, run_liveness, run_scenario
from settlement.runtime.config import AT_LEAST_ONCE, EXACTLY_ONCE
from tests.conftest import OWNED

pytestmark = pytest.mark.integration
NEEDS_OWNED_STACK = {"broker restart mid-run", "registry unavailable 3 s, then back"}
STALLS = "... and whose retries outlast max.poll.interval.ms"


def _run(stack, name: str, ours: bool, guarantee: str = AT_LEAST_ONCE):  # type: ignore[no-untyped-def]
    return run_scenario(name, stack.bootstrap, stack.registry_url, ours=ours, guarantee=guarantee, **SCENARIOS[name])


def _row(name: str):  # type: ignore[no-untyped-def]
    """A row that stops or freezes a broker or the registry runs on a stack of its own (tests/conftest.py)."""
    return pytest.param(name, marks=pytest.mark.xdist_group(OWNED)) if name in NEEDS_OWNED_STACK else name


@pytest.mark.parametrize("name", [_row(n) for n in SCENARIOS if n != STALLS])
def test_exactly_once_books_every_record_once(request, name: str) -> None:
    stack = request.getfixturevalue("owned_stack" if name in NEEDS_OWNED_STACK else "stack")
    outcome = _run(stack, name, ours=True, guarantee=EXACTLY_ONCE)
    assert outcome.finished and outcome.lost == 0 and outcome.duplicates == 0, outcome
    assert outcome.settled + outcome.dead_lettered == outcome.inputs, outcome
    if name == "a batch that always fails":
        assert outcome.skipped_records == 50, outcome  # the extension gave the batch up; the ledger repaired it


def test_exactly_once_repairs_the_batch_the_extension_default_skips(stack) -> None:
    outcome = _run(stack, "function raises on 6 invocations", ours=False, guarantee=EXACTLY_ONCE)
    assert outcome.skipped_records == 50 and outcome.lost == 0 and outcome.duplicates == 0, outcome


AT_LEAST_ONCE_IN_CI = [
    "function raises on 6 invocations",
    "a batch retried after its records were written",
    "every poison kind in the stream",
    "1.5 MB values and 1 MB keys in the stream",
    "an instance killed mid-batch",
    "an instance frozen past its session timeout, then thawed",
]


@pytest.mark.parametrize("name", AT_LEAST_ONCE_IN_CI)
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


# The liveness table's representative rows (all of them: `python -m localrun.experiments.faults`, docs/testing.md):
# the last batch's transaction open when its instance dies or is scaled away, and no further trade on any partition.
LIVENESS_IN_CI = [
    "killed right after its last batch returned, then quiet",
    "Flex scales to zero with transactions open",
]


@pytest.mark.parametrize("name", LIVENESS_IN_CI)
def test_every_trade_is_visible_within_the_bound_with_no_new_trade(stack, name: str) -> None:
    outcome = run_liveness(name, stack.bootstrap, stack.registry_url, EXACTLY_ONCE)
    assert outcome.finished and outcome.lost == 0 and outcome.duplicates == 0, outcome
    assert outcome.visible_s is not None and outcome.visible_s <= VISIBLE_BOUND_S, outcome
    assert liveness_met(outcome)


TRACEPARENT_ROW = (
    "records with a traceparent .NET refuses, tracing on: batches never invoked, committed past or left waiting"
)


def test_batches_the_extension_never_invokes_for_a_malformed_traceparent_are_booked_once_by_the_repair(stack) -> None:
    outcome = run_liveness(TRACEPARENT_ROW, stack.bootstrap, stack.registry_url, EXACTLY_ONCE)
    assert outcome.dropped_records > 0, outcome  # the hazard happened: batches never invoked, then committed past
    assert outcome.finished and outcome.lost == 0 and outcome.duplicates == 0, outcome
    assert outcome.settled + outcome.dead_lettered == outcome.inputs, outcome
    assert outcome.visible_s is not None and outcome.visible_s <= VISIBLE_BOUND_S, outcome
