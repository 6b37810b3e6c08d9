"""The extension's retry model (localrun/platform/extension.py) and the bound our settings must stay under."""

from __future__ import annotations

import random

import pytest

from localrun.platform.extension import (
    KafkaHostOptions,
    backoff_s,
    invalid_traceparent,
    run_execution,
    worst_case_s,
)
from localrun.platform.indexing import RetryPolicy, index_app
from settlement.runtime.config import DEFAULT_DELIVERY_TIMEOUT_S

POLICY = RetryPolicy("exponential_backoff", 2, 1.0, 10.0)


def _run(options: KafkaHostOptions, fails: int, policy: RetryPolicy | None = POLICY, stop_after: int = 10**6):
    calls, sleeps = {"n": 0}, []

    def call() -> None:
        calls["n"] += 1
        if calls["n"] <= fails:
            raise RuntimeError("down")

    execution = run_execution(
        call, options, policy, sleep=sleeps.append, rng=random.Random(1), stopped=lambda: calls["n"] >= stop_after
    )
    return execution, calls["n"], sleeps


def test_the_two_loops_multiply_then_skip_with_commit_on_failure_false() -> None:
    options = KafkaHostOptions(commit_on_failure=False, max_retries=2)
    execution, calls, sleeps = _run(options, fails=10**6)
    assert calls == execution.invocations == (2 + 1) * (2 + 1)
    assert execution.store and execution.skipped
    assert len(sleeps) == 3 * 2  # back-off only inside an execution; re-runs are immediate


def test_commit_on_failure_true_stores_after_one_execution() -> None:
    execution, calls, _ = _run(KafkaHostOptions(commit_on_failure=True, max_retries=5), fails=10**6)
    assert (calls, execution.skipped) == (3, True)


def test_a_recovered_function_stores_normally() -> None:
    execution, calls, _ = _run(KafkaHostOptions(commit_on_failure=False, max_retries=2), fails=4)
    assert (calls, execution.succeeded, execution.skipped) == (5, True, False)


def test_max_retries_minus_one_retries_until_the_instance_stops() -> None:
    execution, calls, _ = _run(KafkaHostOptions(commit_on_failure=False, max_retries=-1), fails=10**6, stop_after=50)
    assert execution.aborted and not execution.store and calls == 50


def test_backoff_is_exponential_randomized_and_capped() -> None:
    rng = random.Random(3)
    delays = [backoff_s(POLICY, a, rng) for a in range(6)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4 and all(d <= 10.0 for d in delays)
    assert backoff_s(RetryPolicy("fixed_delay", 3, 4.0, 4.0), 5) == 4.0


def test_our_worst_case_stays_well_below_max_poll_interval() -> None:
    import function_app

    options = KafkaHostOptions.from_host_json()
    [retry] = [f.retry for f in index_app(function_app.app) if f.binding("kafkaTrigger")]
    # an invocation is bounded by its delivery deadline plus at most one registry request past it
    invocation_s = 1.5 * DEFAULT_DELIVERY_TIMEOUT_S
    worst = worst_case_s(options, retry, invocation_s)
    assert worst < 0.6 * options.max_poll_interval_ms / 1000, worst
    # and a registry or broker outage of three minutes is still ridden out before a batch is skipped
    shortest_outage_s = 3 * sum(backoff_s(retry, a) * 0.8 for a in range(retry.max_retry_count))
    assert shortest_outage_s >= 180
    assert worst_case_s(KafkaHostOptions(commit_on_failure=False, max_retries=-1), retry, 1) == pytest.approx(
        float("inf")
    )


def test_host_json_sets_the_executor_channel() -> None:
    options = KafkaHostOptions.from_host_json()
    assert (options.executor_channel_capacity, options.channel_full_retry_interval_ms) == (2, 1)
    defaults = KafkaHostOptions()
    assert (defaults.executor_channel_capacity, defaults.channel_full_retry_interval_ms) == (1, 50)


@pytest.mark.parametrize(
    ("field", "setting"),
    [
        ("max_batch_size", "maxBatchSize"),
        ("executor_channel_capacity", "executorChannelCapacity"),
        ("channel_full_retry_interval_ms", "channelFullRetryIntervalInMs"),
    ],
)
def test_a_setting_the_extension_refuses_fails_naming_it(field: str, setting: str) -> None:
    with pytest.raises(ValueError, match=f"extensions.kafka.{setting} must be larger than 0"):
        KafkaHostOptions(**{field: 0})


VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "parses"),
    [
        (VALID, True),
        (VALID.replace(b"-", b"_"), True),  # the separators are not checked
        (b"fe" + VALID[2:], True),
        (VALID[:-2] + b"ff", True),
        (b"ff" + VALID[2:], False),  # version ff
        (VALID.upper(), False),  # upper-case hex
        (b"00-" + b"0" * 32 + VALID[35:], False),  # all-zero trace id
        (VALID[:36] + b"0" * 16 + VALID[52:], False),  # all-zero span id
        (VALID + b"-00", False),  # a later version's longer form
        (VALID[:-1], False),
        (VALID[:10] + "é".encode() + VALID[12:], False),  # non-ASCII: read as '?'
        (b"00-garbage-01", False),
        (b"", False),
    ],
)
def test_the_extension_refuses_a_traceparent_as_dotnet_s_activity_context_does(value: bytes, parses: bool) -> None:
    error = invalid_traceparent([("traceparent", value)])
    assert (error is None) == parses, error
    if not parses:
        assert error is not None and error.endswith(" is not a valid traceparent.")


def test_only_the_first_traceparent_header_with_a_value_counts() -> None:
    assert invalid_traceparent([]) is None
    assert invalid_traceparent([("Traceparent", b"bad"), ("tracestate", b"x=1")]) is None  # the key is exact
    assert invalid_traceparent([("traceparent", None), ("traceparent", VALID)]) is None  # null is absent
    assert invalid_traceparent([("traceparent", VALID), ("traceparent", b"bad")]) is None
    assert invalid_traceparent([("traceparent", b"bad"), ("traceparent", VALID)]) == "bad is not a valid traceparent."
