"""The alert rules against the metric stream our code exports, in real local runs: the local host's instances (the
function, and on Flex two timer instances running the repair in turn, as the platform runs a timer on whichever
instance it has) export their metrics as `customMetrics` rows the way the Azure Monitor exporter does
(localrun/experiments/appinsights.py), and tests/alert_conditions.py evaluates each rule's condition over them in the
KQL's words (KQL itself does not run here). Minutes are compressed through settings, never waited for: a minute of
the rules lasts MINUTE_S, the export interval is one such minute, the repair runs every second.

Three scenarios: a healthy run that goes quiet (no condition holds), an instance killed with its last transaction
open (the lag condition holds until the repair books the range), a partition whose settlement is blocked by a
source transaction left open (the stalled condition holds). The killed run also proves the lag gauges: several
instances run the repair, each exports only what its own latest run measured, for one interval, and nothing once
the runs stop."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Producer

from localrun.experiments.scenario import Outcome, Run, _lag_zero, kill_after_last_batch, run_scenario
from settlement.runtime.config import EXACTLY_ONCE
from tests import alert_conditions as ac

pytestmark = pytest.mark.integration
MINUTE_S = 1.0
EXPORT_MS = int(MINUTE_S * 1000)
SLACK_S = 0.75  # a collection's scheduling on a loaded 2-core machine
COMPRESSED = {"SETTLEMENT_REPAIR_SCHEDULE": "*/1 * * * * *"}
OPEN_TEN_SECONDS = {"SETTLEMENT_COMMIT_INTERVAL_MS": "10000"}


def _run(stack: Any, fault: Any, **kwargs: Any) -> Outcome:
    settings = {**COMPRESSED, **kwargs.pop("settings", {})}
    return run_scenario(
        "alerts",
        stack.bootstrap,
        stack.registry_url,
        True,
        EXACTLY_ONCE,
        fault=fault,
        plan="flex",
        settings=settings,
        export_interval_ms=EXPORT_MS,
        timer_instances=2,
        **kwargs,
    )


def _holding(rows: list[dict[str, Any]], now: float) -> dict[str, Any]:
    return {
        "lag": ac.lag_holds(rows, now, MINUTE_S),
        "dead letters": ac.dead_letters_hold(rows, now, MINUTE_S),
        "failed batches": ac.failed_batches_hold(rows, now, MINUTE_S),
        "stalled": ac.stalled_holds(rows, now, MINUTE_S),
    }


def _lag_rows(rows: tuple[dict[str, Any], ...], name: str = "settlement.lag.records") -> list[dict[str, Any]]:
    return [r for r in rows if r["name"] == name]


def quiet_for(seconds: float) -> Any:
    def fault(run: Run) -> None:
        _lag_zero(run)
        time.sleep(seconds)

    return fault


def test_a_healthy_run_that_goes_quiet_holds_no_alert_condition(stack) -> None:
    # quiet longer than the longest window (15 minutes): every rule's window ends up holding only the quiet
    outcome = _run(stack, quiet_for(17 * MINUTE_S), records=300)
    assert outcome.finished and outcome.lost == 0 and outcome.duplicates == 0, outcome
    rows = list(outcome.exported)
    names = {r["name"] for r in rows}
    assert {"settlement.settlements", "settlement.lag.seconds", "settlement.trigger.lag.records"} <= names
    assert len({r["instance"] for r in rows}) == 3  # the trigger's instance and both timer instances exported
    for now in ac.evaluation_times(rows, MINUTE_S / 4):
        holding = _holding(rows, now)
        assert not any(holding.values()), (now, holding)


def kill_then_stop_the_timers(run: Run) -> None:
    """The killed-instance liveness fault; once the ledger has caught up and a few runs measured it, no timer runs
    any more (the platform wakes nothing) while both timer instances live on, for a few export intervals."""
    kill_after_last_batch(run)
    deadline = time.monotonic() + 60
    while run.drain.ledger_lag() != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3 * MINUTE_S)
    run.host.schedules = []
    time.sleep(4 * MINUTE_S)


def _latest_runs(runs: tuple[dict[str, Any], ...], instance: str, at: float) -> list[dict[str, Any]]:
    """The instance's run that ended last before `at`, and the one that was running at `at` (if any)."""
    own = [r for r in runs if r["instance"] == instance]
    before = [r for r in own if r["ended_at"] <= at]
    running = [r for r in own if r["started_at"] <= at < r["ended_at"]]
    return before[-1:] + running


def test_an_instance_killed_with_its_transaction_open_holds_the_lag_condition_until_the_repair_books_it(
    stack,
) -> None:
    # The range stays behind for the stall period (the commit interval plus 5 s) before a repair takes it: 15 s, so
    # that the lag rule's 5-minute window (5 s) fits in it with room for timer runs delayed on a loaded machine.
    outcome = _run(stack, kill_then_stop_the_timers, records=300, tail=30, settings=OPEN_TEN_SECONDS)
    assert outcome.finished and outcome.lost == 0 and outcome.duplicates == 0, outcome
    rows, runs = list(outcome.exported), outcome.repair_runs
    instances = {r["instance"] for r in runs}
    assert instances == {"timer-instance-1", "timer-instance-2"}, instances  # several instances ran the repair
    booking = [(r, p) for r in runs for p, m in r["run"].items() if m[3] > 0]
    assert booking, "the repair booked nothing: the kill left no open transaction"

    # The lag gauges: every lag row an instance exported is what its own latest run measured (or the run under
    # way), and no older than one export interval after that run.
    fields = {"settlement.lag.records": 0, "settlement.lag.seconds": 1, "settlement.trigger.lag.records": 2}
    for row in (r for r in rows if r["name"] in fields):
        partition = int(row["customDimensions"]["partition"])
        candidates = _latest_runs(runs, row["instance"], row["timestamp"])
        assert candidates, row
        measured = [c["run"][partition][fields[row["name"]]] for c in candidates if partition in c["run"]]
        assert row["value"] in measured, (row, candidates)
        assert row["timestamp"] - candidates[0]["ended_at"] <= EXPORT_MS / 1000 + SLACK_S or len(candidates) == 2
    # ... and once no run comes any more, nothing: both timer instances live on, exporting no lag
    last_run = max(r["ended_at"] for r in runs)
    late = [r for r in rows if r["name"] in fields and r["timestamp"] > last_run + EXPORT_MS / 1000 + SLACK_S]
    assert late == [], late[:3]

    for run, partition in booking:
        key = (str(next(r for r in rows if r["name"] in fields)["customDimensions"]["topic"]), str(partition))
        # seen: the booking run measured the range behind; its instance exported that within one interval
        seen = [
            r
            for r in _lag_rows(outcome.exported)
            if r["instance"] == run["instance"]
            and int(r["customDimensions"]["partition"]) == partition
            and run["started_at"] <= r["timestamp"] <= run["ended_at"] + EXPORT_MS / 1000 + SLACK_S
        ]
        assert any(r["value"] > 0 for r in seen), (run, seen)
        # repaired: the next runs measure 0, exported within one interval of the next run
        later = [r for r in runs if r["started_at"] >= run["ended_at"] and partition in r["run"]]
        assert later and later[0]["run"][partition][0] == 0, later[:1]
        zero_at = min(
            r["timestamp"]
            for r in _lag_rows(outcome.exported)
            if int(r["customDimensions"]["partition"]) == partition
            and r["timestamp"] > run["ended_at"]
            and r["value"] == 0
        )
        assert zero_at <= later[0]["ended_at"] + EXPORT_MS / 1000 + SLACK_S
        # the lag condition held in the minutes before the booking, and no more once a 0 was exported
        # (after the bulk's last settlements were counted by the trigger's instance: the killed instance never counted
        # its last batch's, and the timer instance that books the range counts those at the booking)
        bulk_done = max(
            r["timestamp"] for r in rows if r["name"] == "settlement.settlements" and r["instance"] not in instances
        )
        before = [t for t in ac.evaluation_times(rows, MINUTE_S / 4, until=zero_at) if t > bulk_done]
        assert any(key in ac.lag_holds(rows, t, MINUTE_S) for t in before), (key, _story(rows, runs, partition))
        after = [t for t in ac.evaluation_times(rows, MINUTE_S / 4) if t >= zero_at]
        assert not any(key in ac.lag_holds(rows, t, MINUTE_S) for t in after), key
    for now in ac.evaluation_times(rows, MINUTE_S / 4):
        assert not ac.dead_letters_hold(rows, now, MINUTE_S) and not ac.failed_batches_hold(rows, now, MINUTE_S)


def _story(rows: list[dict[str, Any]], runs: tuple[dict[str, Any], ...], partition: int) -> list[Any]:
    """A partition's lag rows and the repair runs, in time order (relative seconds), for a failure's message."""
    start = min(r["timestamp"] for r in rows)
    lines: list[Any] = [
        (round(r["timestamp"] - start, 2), r["instance"], r["value"])
        for r in rows
        if r["name"] == ac.LAG_SECONDS and r["customDimensions"].get("partition") == str(partition)
    ]
    lines += [(round(r["ended_at"] - start, 2), r["instance"], "run", r["run"].get(partition)) for r in runs]
    return sorted(lines, key=lambda line: line[0])


WAITING_BEHIND = 40  # trades written behind the open transaction


def source_transaction_left_open(seconds: float) -> Any:
    """A writer of the source (ksqlDB, say) that hangs with a transaction open on partition 0: a read_committed
    reader, the trigger's and the repair's alike, stops at its first record until the coordinator aborts it, and the
    trades written after it wait. Nothing can settle them: the trigger delivers nothing, the repair's drain finds
    nothing below the last stable offset. The transaction outlives the run (its timeout is longer)."""

    def fault(run: Run) -> None:
        from localrun.experiments.generator import GeneratorConfig, trades, value_encoder

        encode = value_encoder(run.registry_url, run.source)
        hung = Producer(
            {
                "bootstrap.servers": run.bootstrap,
                "transactional.id": f"hung-writer-{run.source}",
                "transaction.timeout.ms": 120_000,
            }
        )
        hung.init_transactions(30)
        hung.begin_transaction()
        writer = Producer({"bootstrap.servers": run.bootstrap, "enable.idempotence": True})
        for i, (key, trade) in enumerate(trades(1 + WAITING_BEHIND, GeneratorConfig(seed=17))):
            (hung if i == 0 else writer).produce(run.source, key=key, value=encode(trade), partition=0)
            if i == 0:
                assert hung.flush(30) == 0
        assert writer.flush(30) == 0
        run.inputs += 1 + WAITING_BEHIND
        run.fault_at = time.monotonic()  # from here the run is through only once a reader sees every input
        time.sleep(seconds)

    return fault


def test_a_partition_whose_settlement_is_blocked_holds_the_stalled_condition(stack) -> None:
    # A source transaction left open on partition 0 once the first trades settled: nothing settles after it, the
    # trigger's lag stands; 20 minutes of the rules pass.
    outcome = _run(stack, source_transaction_left_open(20 * MINUTE_S), records=300, timeout_s=45.0)
    assert not outcome.finished and outcome.lost > 0, outcome  # blocked: the records behind it wait
    rows = list(outcome.exported)
    settled = [r["timestamp"] for r in rows if r["name"] == "settlement.settlements"]
    assert settled, "nothing settled before the block"
    last = max(r["timestamp"] for r in rows)
    quiet_from = max(settled) + 15 * MINUTE_S  # the stalled rule's window holds no settlement from here on
    holding_at = [t for t in ac.evaluation_times(rows, MINUTE_S / 4) if ac.stalled_holds(rows, t, MINUTE_S)]
    assert holding_at, "the stalled condition never held"
    assert min(holding_at) > max(settled)  # never while settlements were counted in the window
    # from when the rule's window holds no settlement and measurements of records waiting span 10 minutes, it holds
    first_wait = min(
        r["timestamp"] for r in rows if r["name"] in ac.WAITING and r["value"] > 0 and r["timestamp"] > max(settled)
    )
    steady = max(quiet_from, first_wait + (ac.STALLED_SPAN_MIN + 1) * MINUTE_S) + MINUTE_S
    assert last > steady + 2 * MINUTE_S, "the run ended before the rule could see it"
    missed = [
        t
        for t in ac.evaluation_times(rows, MINUTE_S / 4)
        if steady <= t <= last and not ac.stalled_holds(rows, t, MINUTE_S)
    ]
    # A rule window whose measurements have a gap (a repair run that took seconds: minutes, compressed) rightly
    # does not hold; on this shared 2-core machine a few such moments are allowed, not a stretch.
    window = [t for t in ac.evaluation_times(rows, MINUTE_S / 4) if steady <= t <= last]
    assert len(missed) <= len(window) // 4, (len(missed), len(window), _story(rows, outcome.repair_runs, 0))
    for now in ac.evaluation_times(rows, MINUTE_S / 4):
        assert not ac.lag_holds(rows, now, MINUTE_S)  # the ledger is not behind the trigger: the trigger is stuck
