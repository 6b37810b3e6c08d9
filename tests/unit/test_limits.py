"""Start-up refuses settings that would break a documented bound (settlement/runtime/limits.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from localrun.platform.extension import KafkaHostOptions
from localrun.platform.extension import worst_case_s as modelled_worst_case
from localrun.platform.indexing import RetryPolicy
from settlement.core.errors import ConfigError
from settlement.runtime.config import check_invariants, load_trigger_settings
from settlement.runtime.limits import INVOCATION_FACTOR, HostLimits, check, worst_case_s

HOST = HostLimits.from_host_json()


def test_host_json_is_read_as_the_extension_reads_it() -> None:
    assert (HOST.executions, HOST.max_poll_interval_ms, HOST.function_timeout_s) == (3.0, 1_800_000, 600.0)


@pytest.mark.parametrize("retries", range(0, 9))
def test_the_guard_computes_what_the_extension_model_does(retries: int) -> None:
    policy = RetryPolicy("exponential_backoff", retries, 5, 60)
    options = KafkaHostOptions.from_host_json()
    assert worst_case_s(HOST.executions, retries, 45.0) == pytest.approx(modelled_worst_case(options, policy, 45.0))


@pytest.mark.parametrize(("retries", "ok"), [(0, True), (4, True), (6, True), (7, False), (100, False), (-1, False)])
def test_retries_past_the_poll_interval_are_refused_naming_the_setting(retries: int, ok: bool) -> None:
    if ok:
        check(retries, 30.0, 0.3, HOST)
        return
    with pytest.raises(ConfigError) as caught:
        check(retries, 30.0, 0.3, HOST)
    assert caught.value.setting == "SETTLEMENT_MAX_RETRIES"
    assert "maxPollIntervalMs of 1800 s" in str(caught.value)


def test_a_deadline_the_function_timeout_would_cut_short_is_refused() -> None:
    limit = HOST.function_timeout_s / INVOCATION_FACTOR
    check(0, limit - 1, 0.3, HOST)
    with pytest.raises(ConfigError, match=r"SETTLEMENT_DELIVERY_TIMEOUT_SECONDS: 400 s .* functionTimeout of 600 s"):
        check(0, limit, 0.3, HOST)
    # a longer deadline with fewer retries fits the poll bound, but not a longer one than the broker allows
    unbounded = HostLimits(1.0, 10**9, math.inf)
    check(0, 800.0, 60.0, unbounded)
    with pytest.raises(ConfigError, match=r"transaction\.max\.timeout\.ms"):
        check(0, 1800.0, 0.3, unbounded)


def test_host_json_variants(tmp_path: Path) -> None:
    def host(**kafka: object) -> HostLimits:
        path = tmp_path / "host.json"
        path.write_text(json.dumps({"functionTimeout": "-1", "extensions": {"kafka": kafka}}))
        return HostLimits.from_host_json(path)

    assert host(commitOnFailure=True).executions == 1.0  # a failed batch is skipped after one execution
    assert host(commitOnFailure=False).executions == 6.0  # the extension's default maxRetries 5
    assert host().max_poll_interval_ms == 300_000 and host().function_timeout_s == math.inf
    with pytest.raises(ConfigError) as caught:
        check(4, 30.0, 0.3, host(commitOnFailure=False, maxRetries=-1, maxPollIntervalMs=1_800_000))
    assert caught.value.setting == "host.json maxRetries"
    # with the extension's default poll interval (5 min) even today's retries would be refused
    with pytest.raises(ConfigError, match="SETTLEMENT_MAX_RETRIES"):
        check(4, 30.0, 0.3, host(commitOnFailure=False, maxRetries=2))


def test_the_defaults_pass_at_indexing() -> None:
    check_invariants({}, load_trigger_settings({}))
