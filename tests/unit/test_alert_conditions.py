"""The alert conditions as tests/alert_conditions.py evaluates them: tied to the template's queries and windows, and
right on the streams that fooled the stalled rule before (one `waiting > 0` sample at low traffic, its settlement
not ingested yet)."""

from __future__ import annotations

from typing import Any

from tests import alert_conditions as ac


def row(t: float, name: str, value: float, partition: int | None = 0) -> dict[str, Any]:
    dims = {} if partition is None else {"topic": "user_trades", "partition": str(partition)}
    return {"timestamp": t, "name": name, "value": value, "customDimensions": dims}


def test_the_conditions_here_are_the_template_s() -> None:
    rules = ac.rules()
    assert {n: (r.window_min, r.frequency_min) for n, r in rules.items()} == {
        "lagAlertName": (5, 5),
        "deadLetterAlertName": (5, 5),
        "failedBatchAlertName": (5, 5),
        "stalledAlertName": (15, 5),
    }
    lag = rules["lagAlertName"].query
    assert "summarize lowest_s = min(value)" in lag and "by topic, partition | where lowest_s > {0}" in lag
    assert "parameters('lagSecondsThreshold')" in lag and ac.default("lagSecondsThreshold") == 60
    assert "dead_letters = sum(value)" in rules["deadLetterAlertName"].query
    assert "failed = sum(value)" in rules["failedBatchAlertName"].query
    stalled = rules["stalledAlertName"].query
    for words in (
        'summarize sum(value)); customMetrics | where name in ("settlement.lag.records", "settlement.trigger.lag.',
        "summarize waiting = max(value) by topic = tostring(customDimensions.topic), partition = tostring("
        "customDimensions.partition), minute = bin(timestamp, 1m)",
        "summarize least = min(waiting), first_seen = min(minute), last_seen = max(minute) by topic, partition",
        "where least > 0 and last_seen - first_seen >= 10m and coalesce(settled, 0.0) == 0.0",
    ):
        assert words in stalled, words


def test_one_waiting_sample_at_low_traffic_does_not_hold_the_stalled_condition() -> None:
    # A trade arrives; the repair's next run sees it waiting; the trigger settles it a second later, but the
    # settlements counter is exported up to 60 s later and ingested later still: at the evaluation, not there yet.
    rows = [row(600.0, "settlement.trigger.lag.records", 1), row(600.0, "settlement.lag.records", 0)]
    assert ac.stalled_holds(rows, now=700.0) == set()
    # the rule as it was (`max(waiting) > 0 and no settlement`) fired on exactly this
    settled = sum(r["value"] for r in rows if r["name"] == "settlement.settlements")
    assert max(r["value"] for r in rows) > 0 and settled == 0


def test_records_waiting_for_ten_minutes_with_nothing_settled_hold_the_stalled_condition() -> None:
    rows = [row(60.0 * m, "settlement.trigger.lag.records", 5) for m in range(11)]
    rows += [row(60.0 * m, "settlement.lag.records", 0) for m in range(11)]
    assert ac.stalled_holds(rows, now=600.0) == {("user_trades", "0")}
    assert ac.stalled_holds([*rows, row(590.0, "settlement.settlements", 1, None)], now=600.0) == set()
    # a minute in which nothing waited breaks it; so does a span under 10 minutes
    assert ac.stalled_holds([*rows, row(300.0, "settlement.trigger.lag.records", 0)], now=600.0) == {
        ("user_trades", "0")
    }  # the same minute had 5 waiting too: the minute's largest counts
    gap = [r for r in rows if r["timestamp"] != 300.0] + [row(330.0, "settlement.trigger.lag.records", 0)]
    assert ac.stalled_holds(gap, now=600.0) == set()
    assert ac.stalled_holds(rows, now=600.0 + 60.0 * 6) == set()  # the window now starts after minute 5


def test_the_lag_condition_needs_every_measurement_in_the_window_above_the_threshold() -> None:
    rows = [row(t, ac.LAG_SECONDS, v) for t, v in ((0.0, 70.0), (60.0, 130.0), (120.0, 190.0))]
    assert ac.lag_holds(rows, now=200.0) == {("user_trades", "0")}
    assert ac.lag_holds([*rows, row(150.0, ac.LAG_SECONDS, 0.0)], now=200.0) == set()
    assert ac.lag_holds(rows, now=1000.0) == set()  # nothing measured in the window: nothing holds
    # compressed: a minute lasting 1 s scales the 60 s threshold to 1 s and the 5-minute window to 5 s
    fast = [row(t, ac.LAG_SECONDS, v) for t, v in ((10.0, 1.5), (12.0, 3.5), (14.0, 5.5))]
    assert ac.lag_holds(fast, now=14.5, minute_s=1.0) == {("user_trades", "0")}
    assert ac.lag_holds(fast, now=20.0, minute_s=1.0) == set()


def test_the_counter_conditions_sum_the_window() -> None:
    rows = [row(10.0 * i, "settlement.batches.failed", 1, None) for i in range(3)]
    assert ac.failed_batches_hold(rows, now=25.0)  # 3 > 2
    assert not ac.failed_batches_hold(rows[:2], now=25.0)
    dead = [row(1.0, "settlement.dead_letters", 101, None)]
    assert ac.dead_letters_hold(dead, now=2.0) and not ac.dead_letters_hold(dead, now=400.0)
