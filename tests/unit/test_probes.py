"""The seam between the emulated platform and the experiments (localrun/platform/hooks.py): the platform's own hooks
change nothing; the experiments' probes inject the rows' function faults and cross into spawned instance processes
whole (they pickle, and build their metric reader there)."""

from __future__ import annotations

import multiprocessing
from types import SimpleNamespace
from typing import Any

import pytest

from localrun.experiments.function_faults import faulty
from localrun.experiments.probes import Measurements, Probes
from localrun.platform.hooks import InstanceHooks


def _events(*coordinates: tuple[int, int]) -> list[Any]:
    return [SimpleNamespace(partition=p, offset=o) for p, o in coordinates]


def _counting() -> tuple[Any, list[int]]:
    calls: list[int] = []

    def function(events: list[Any]) -> str:
        calls.append(len(events))
        return "done"

    return function, calls


def test_the_platform_alone_changes_nothing() -> None:
    hooks = InstanceHooks()
    function, _ = _counting()
    assert hooks.function(function) is function
    assert hooks.after_batch([], True, 0.0) == {} and hooks.after_timer("repair") == {}
    assert len(hooks.metric_readers("instance-1", lambda _report: None)) == 1  # aggregates, as on Azure


def test_fail_first_raises_on_the_first_invocations_only() -> None:
    function, calls = _counting()
    wrapped = faulty(function, "fail-first:2")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="injected failure"):
            wrapped(events=_events((0, 1)))
    assert calls == []  # raised before the function's work
    assert wrapped(events=_events((0, 1))) == "done" and calls == [1]


def test_fail_after_first_raises_after_the_work() -> None:
    function, calls = _counting()
    wrapped = faulty(function, "fail-after-first:1")
    with pytest.raises(RuntimeError, match="after the batch was written"):
        wrapped(events=_events((0, 1), (0, 2)))
    assert calls == [2]
    assert wrapped(events=_events((0, 3))) == "done"


def test_fail_offset_raises_for_every_batch_holding_the_record_and_faults_compose() -> None:
    function, calls = _counting()
    wrapped = faulty(function, "slow:0,fail-offset:0:60")
    for _ in range(3):
        with pytest.raises(RuntimeError, match="holds 0:60"):
            wrapped(events=_events((0, 59), (0, 60)))
    assert wrapped(events=_events((1, 60), (0, 61))) == "done"  # another partition's offset 60 is no match
    assert calls == [2]


def test_the_probes_wrap_the_function_with_the_rows_fault() -> None:
    function, _ = _counting()
    assert Probes().function(function) is function
    with pytest.raises(RuntimeError):
        Probes(function_fault="fail-first:1").function(function)(events=_events((0, 0)))


def _in_a_spawned_process(probes: Probes, out: Any) -> None:
    readers = probes.metric_readers("instance-1", out.put)
    out.put({"readers": len(readers), "fault": probes.function_fault, "lag": probes.after_timer("repair")["lag"]})


def test_the_probes_cross_into_a_spawned_process_and_build_their_reader_there() -> None:
    probes = Probes(function_fault="fail-first:1", export_interval_ms=60_000)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    process = ctx.Process(target=_in_a_spawned_process, args=(probes, out))
    process.start()
    report = out.get(timeout=60)
    process.join(30)
    # the in-memory reader for the lag gauges and the periodic one that exports to the host; no repair ran here
    assert report == {"readers": 2, "fault": "fail-first:1", "lag": {}}
    assert probes._reader is None  # built in the instance process, never in the host's


def test_the_measurements_gather_the_probes_reports() -> None:
    measurements = Measurements(started=0.0)
    measurements({"kind": "metrics", "instance": "timer-instance-1", "rows": [{"name": "settlement.lag.records"}]})
    timer = {"kind": "timer", "instance": "timer-instance-1", "started_at": 1.0, "ended_at": 2.0, "error": None}
    measurements({**timer, "lag": {0: (5, 1.5)}, "repaired": 5, "run": {0: (5, 1.5, 0, 5)}})
    measurements({**timer, "lag": {}, "repaired": 0, "run": {}})  # a run that measured nothing adds no sample
    measurements({"kind": "drained", "instance": "instance-1"})
    assert measurements.exported == [{"name": "settlement.lag.records", "instance": "timer-instance-1"}]
    assert measurements.repaired == 5
    assert [lag for _, lag in measurements.lag_samples] == [{0: (5, 1.5)}]
    assert measurements.repair_runs == [
        {"instance": "timer-instance-1", "started_at": 1.0, "ended_at": 2.0, "run": {0: (5, 1.5, 0, 5)}}
    ]
