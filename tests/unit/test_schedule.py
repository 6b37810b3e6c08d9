"""NCRONTAB schedules (settlement/core/schedule.py), and the local host's timer shapes (localrun/platform/timers.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func
import pytest

from localrun.platform.scaler import ScaleController
from localrun.platform.timers import Schedule, TimerBinding, timer_request
from settlement.core.schedule import longest_interval_s, next_after, normalized
from settlement.runtime.config import ConfigError, load_trigger_settings


@pytest.mark.parametrize(
    ("text", "six_fields"),
    [
        ("*/10 * * * * *", "*/10 * * * * *"),
        ("0 */5 * * * *", "0 */5 * * * *"),
        ("0 0 * * *", "0 0 0 * * *"),  # five fields: second 0, as the host reads them
        ("0 30 9 * * MON-FRI", "0 30 9 * * MON-FRI"),
    ],
)
def test_ncrontab_the_host_accepts(text: str, six_fields: str) -> None:
    assert normalized(text) == six_fields


@pytest.mark.parametrize("text", ["", "bogus", "*/10 * * * * * *", "0 0 0 L * *", "0 0 0 ? * *", "0 0 0 * * 5#3",
                                  "70 * * * * *", "00:00:10"])  # fmt: skip
def test_ncrontab_the_host_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        normalized(text)


def test_a_bad_schedule_names_its_setting() -> None:
    with pytest.raises(ConfigError, match="SETTLEMENT_REPAIR_SCHEDULE"):
        load_trigger_settings({"SETTLEMENT_REPAIR_SCHEDULE": "0 0 0 15W * *"})
    assert load_trigger_settings({}).repair_schedule == "*/10 * * * * *"


def test_occurrences() -> None:
    start = datetime(2026, 12, 4, 18, 0, 3, tzinfo=UTC)
    assert next_after("*/10 * * * * *", start) == datetime(2026, 12, 4, 18, 0, 10, tzinfo=UTC)
    assert longest_interval_s("*/10 * * * * *", start) == 10.0
    assert longest_interval_s("0 30 9 * * *", start) == 86_400.0


def test_the_timer_request_is_what_the_library_decodes_from_the_hosts_json() -> None:
    request = timer_request(past_due=True)
    assert isinstance(request, func.TimerRequest) and request.past_due is True
    assert request.schedule == {"AdjustForDST": True} and request.schedule_status == {}


def test_a_schedule_fires_on_its_occurrences_and_reports_lateness() -> None:
    timer = TimerBinding("repair", "*/10 * * * * *", False, False, lambda timer: None, "timer")
    start = datetime(2026, 12, 4, 18, 0, 3, tzinfo=UTC)
    schedule = Schedule(timer, start)
    assert not schedule.due(datetime(2026, 12, 4, 18, 0, 9, tzinfo=UTC))
    assert schedule.due(datetime(2026, 12, 4, 18, 0, 10, tzinfo=UTC))
    assert schedule.fired(datetime(2026, 12, 4, 18, 0, 10, tzinfo=UTC)) is False
    assert schedule.next == datetime(2026, 12, 4, 18, 0, 20, tzinfo=UTC)
    assert schedule.fired(datetime(2026, 12, 4, 18, 0, 25, tzinfo=UTC)) is True  # 5 s late: past due


def test_flex_scales_the_trigger_to_zero_and_back_premium_keeps_one() -> None:
    flex = ScaleController("target", lag_threshold=100, partitions=6, plan="flex")
    assert flex.desired(lag=0, instances=3, now_s=1) == 0  # unthrottled, as the extension's target scaler
    assert flex.desired(lag=1, instances=0, now_s=2) == 1
    premium = ScaleController("target", lag_threshold=100, partitions=6, plan="premium")
    assert premium.desired(lag=0, instances=3, now_s=100) == 1
    incremental = ScaleController("incremental", lag_threshold=100, partitions=6, plan="flex")
    assert incremental.desired(lag=5, instances=0, now_s=0) == 1
    assert incremental.desired(lag=0, instances=2, now_s=0) == 0
