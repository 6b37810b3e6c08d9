"""The four alert rules' conditions (scripts/monitoring/template.json), evaluated in Python over `customMetrics` rows,
in the same words as their KQL: KQL does not run here (Kusto.Language parses and analyses it, nothing executes it),
so the tests prove the rules' inputs (the rows our code exports, localrun/experiments/appinsights.py) and evaluate each
condition over them as the query states it. `minute_s` is how long a minute of the rules lasts in a test: 60 for
real time, less to compress the windows and thresholds (the export interval and the repair's schedule are
compressed with them through settings); every figure is the template's own, scaled by it.

`test_the_conditions_here_are_the_template_s` (tests/unit/test_alert_conditions.py) fails when a rule's query or
window changes without this file."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[1] / "scripts" / "monitoring" / "template.json"
Row = dict[str, Any]
LAG_SECONDS = "settlement.lag.seconds"
WAITING = ("settlement.lag.records", "settlement.trigger.lag.records")


@dataclass(frozen=True)
class Rule:
    name: str  # the template's parameter that names it
    query: str
    window_min: float
    frequency_min: float


def rules() -> dict[str, Rule]:
    """The template's scheduled query rules by their name parameter, with their windows in minutes."""
    template = json.loads(TEMPLATE.read_text())
    out = {}
    for res in template["resources"]:
        if res["type"] == "Microsoft.Insights/scheduledQueryRules":
            name = re.fullmatch(r"\[parameters\('(\w+)'\)\]", res["name"]).group(1)  # type: ignore[union-attr]
            props = res["properties"]
            [criterion] = props["criteria"]["allOf"]
            out[name] = Rule(
                name, criterion["query"], _minutes(props["windowSize"]), _minutes(props["evaluationFrequency"])
            )
    return out


def default(parameter: str) -> int:
    return int(json.loads(TEMPLATE.read_text())["parameters"][parameter]["defaultValue"])


def _minutes(iso: str) -> float:
    match = re.fullmatch(r"PT(\d+)M", iso)
    assert match, iso
    return float(match.group(1))


def _window(rows: Iterable[Row], now: float, minutes: float, minute_s: float) -> list[Row]:
    """The rows a rule evaluated at `now` reads: its window, (now - windowSize, now]."""
    start = now - minutes * minute_s
    return [r for r in rows if start < r["timestamp"] <= now]


def _partition(row: Row) -> tuple[str, str]:
    dims = row["customDimensions"]
    return str(dims.get("topic")), str(dims.get("partition"))


def lag_holds(
    rows: Sequence[Row], now: float, minute_s: float = 60.0, threshold_s: float | None = None
) -> set[tuple[str, str]]:
    """`customMetrics | where name == "settlement.lag.seconds" | summarize lowest_s = min(value) by topic, partition
    | where lowest_s > {lagSecondsThreshold}` over the last 5 minutes: the partitions whose every lag measurement in
    the window is above the threshold (seconds, scaled like the minutes)."""
    rule = rules()["lagAlertName"]
    threshold = (default("lagSecondsThreshold") if threshold_s is None else threshold_s) * minute_s / 60
    lowest: dict[tuple[str, str], float] = {}
    for row in _window(rows, now, rule.window_min, minute_s):
        if row["name"] == LAG_SECONDS:
            key = _partition(row)
            lowest[key] = min(lowest.get(key, math.inf), row["value"])
    return {key for key, value in lowest.items() if value > threshold}


def dead_letters_hold(rows: Sequence[Row], now: float, minute_s: float = 60.0, threshold: int = 100) -> bool:
    """`customMetrics | where name == "settlement.dead_letters" | summarize dead_letters = sum(value) | where
    dead_letters > {deadLetterThreshold}` over the last 5 minutes (deploy.sh passes 100 unless told otherwise)."""
    rule = rules()["deadLetterAlertName"]
    window = _window(rows, now, rule.window_min, minute_s)
    return sum(r["value"] for r in window if r["name"] == "settlement.dead_letters") > threshold


def failed_batches_hold(rows: Sequence[Row], now: float, minute_s: float = 60.0) -> bool:
    """`customMetrics | where name == "settlement.batches.failed" | summarize failed = sum(value) | where failed >
    {failedBatchThreshold}` over the last 5 minutes."""
    rule = rules()["failedBatchAlertName"]
    window = _window(rows, now, rule.window_min, minute_s)
    return sum(r["value"] for r in window if r["name"] == "settlement.batches.failed") > default("failedBatchThreshold")


STALLED_SPAN_MIN = 10.0  # `last_seen - first_seen >= 10m`
STALLED_BIN_MIN = 1.0  # `minute = bin(timestamp, 1m)`


def stalled_holds(rows: Sequence[Row], now: float, minute_s: float = 60.0) -> set[tuple[str, str]]:
    """Over the last 15 minutes: `settled` = the sum of `settlement.settlements`; per partition and minute,
    `waiting` = the largest `settlement.lag.records` or `settlement.trigger.lag.records`; then per partition
    `least` = the smallest minute's waiting, `first_seen` / `last_seen` its first and last minute; the partitions
    where `least > 0 and last_seen - first_seen >= 10m and settled == 0`."""
    rule = rules()["stalledAlertName"]
    window = _window(rows, now, rule.window_min, minute_s)
    settled = sum(r["value"] for r in window if r["name"] == "settlement.settlements")
    waiting: dict[tuple[str, str], dict[float, float]] = {}
    bin_s = STALLED_BIN_MIN * minute_s
    for row in window:
        if row["name"] in WAITING:
            minute = math.floor(row["timestamp"] / bin_s) * bin_s
            by_minute = waiting.setdefault(_partition(row), {})
            by_minute[minute] = max(by_minute.get(minute, -math.inf), row["value"])
    out = set()
    for key, by_minute in waiting.items():
        least = min(by_minute.values())
        span = max(by_minute) - min(by_minute)
        if least > 0 and span >= STALLED_SPAN_MIN * minute_s and settled == 0:
            out.add(key)
    return out


def evaluation_times(rows: Sequence[Row], step_s: float, until: float | None = None) -> list[float]:
    """Times to evaluate the rules at: every `step_s` from the first row to the last (or `until`)."""
    if not rows:
        return []
    first = min(r["timestamp"] for r in rows)
    last = until if until is not None else max(r["timestamp"] for r in rows)
    return [first + i * step_s for i in range(int((last - first) / step_s) + 2)]
