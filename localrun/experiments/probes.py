"""What the experiments measure and break inside the emulated platform, through the seam it exposes
(localrun/platform/hooks.py): `Probes` runs in each instance, `Measurements` gathers the probes' reports in the
host's process.

In each instance the probes wrap the function with the row's function fault (localrun/experiments/function_faults.py),
keep an in-memory reader on the process's meter provider to read back the repair's lag gauges, export the process's
metrics as `customMetrics` rows every `export_interval_ms` (localrun/experiments/appinsights.py: what Application
Insights would be sent; the alert tests read them), count each succeeded batch's trade-to-acknowledgement latency,
and add to each repair run's report what that run measured. None of it is the platform's: the Functions host knows
none of these figures.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from localrun.experiments.accounting import latency_buckets
from localrun.experiments.appinsights import periodic_reader
from localrun.experiments.function_faults import faulty
from localrun.platform.hooks import Emit, InstanceHooks, Report
from localrun.platform.instance import Range

LagGauges = dict[int, tuple[int, float]]  # partition: (records, seconds) behind, as the repair's gauges hold it


@dataclass
class Probes(InstanceHooks):
    """The experiments' hooks in each instance (picklable: plain fields; the reader is built in the process)."""

    function_fault: str | None = None  # see function_faults.faulty
    # Export the process's metrics every this many ms to the host as `customMetrics` rows, as the Azure Monitor
    # distro exports them every OTEL_METRIC_EXPORT_INTERVAL (which the app settings then set to the same).
    export_interval_ms: int | None = None
    app_module: str = "function_app"  # the module the instances index (its `root` holds the repair)
    _reader: Any = field(default=None, init=False, repr=False, compare=False)

    def function(self, function: Callable[..., Any]) -> Callable[..., Any]:
        return faulty(function, self.function_fault)

    def metric_readers(self, instance: str, emit: Emit) -> list[Any]:
        """An in-memory reader kept for the lag gauges (it also stands for the exporter's aggregation, as the
        platform's own reader does), and with `export_interval_ms` the periodic reader that exports to the host."""
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        self._reader = InMemoryMetricReader()
        readers: list[Any] = [self._reader]
        if self.export_interval_ms is not None:

            def export(rows: list[dict[str, Any]]) -> None:
                emit({"kind": "metrics", "instance": instance, "pid": os.getpid(), "rows": rows})

            readers.append(periodic_reader(export, self.export_interval_ms))
        return readers

    def after_batch(self, batch: Sequence[Message], succeeded: bool, done_ms: float) -> dict[str, Any]:
        latency = latency_buckets((m.timestamp()[1] for m in batch), done_ms) if succeeded else {}
        return {"latency": latency}

    def after_timer(self, function: str) -> dict[str, Any]:
        run = _last_repair_run(self.app_module)
        return {
            "lag": lag_gauges(self._reader),
            "repaired": 0 if run is None else run.settled,
            "run": {} if run is None else _per_partition(run),
        }


def _last_repair_run(app_module: str) -> Any:
    """This process's latest repair run, from the app's composition root (`root`, settlement/runtime/root.py), if
    the timer built a repair; nothing is built here."""
    app = sys.modules.get(app_module)
    services = None if app is None else app.root.current()
    repair = None if services is None else services.current_repair()
    return None if repair is None else repair.last


def _per_partition(run: Any) -> dict[int, tuple[int, float, int, int]]:
    """What a repair run measured per partition, (records, seconds, waiting), and settled."""
    return {p.partition: (p.offsets.lag, p.lag_s, p.offsets.waiting, p.settled) for p in run.partitions}


def lag_gauges(reader: Any) -> LagGauges:
    """Settlement lag per partition as the repair's gauges hold it now (`settlement.lag.records` and
    `settlement.lag.seconds`, read back from the instruments, not computed again)."""
    from settlement.telemetry import LAG_RECORDS, LAG_SECONDS

    if reader is None:
        return {}
    values: dict[str, dict[int, float]] = {LAG_RECORDS: {}, LAG_SECONDS: {}}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name in values:
                    for point in metric.data.data_points:
                        values[metric.name][int(point.attributes["partition"])] = point.value
    return {p: (int(n), values[LAG_SECONDS].get(p, 0.0)) for p, n in values[LAG_RECORDS].items()}


@dataclass
class Measurements:
    """The probes' figures over a run, gathered from the instances' reports (an observer of the host)."""

    started: float = field(default_factory=time.monotonic)  # set to the host's start: lag samples count from it
    ranges: list[Range] = field(default_factory=list)  # (partition, first, last) of every batch the host ran
    # trade-to-acknowledgement latency of the records of succeeded batches (accounting.latency_buckets)
    latency: collections.Counter[int] = field(default_factory=collections.Counter)
    repaired: int = 0  # records the repair timer settled
    # (seconds since the host started, {partition: (records, seconds)}) per repair run: the lag it recorded
    lag_samples: list[tuple[float, LagGauges]] = field(default_factory=list)
    # the repair runs, each {"instance", "started_at", "ended_at" (epoch s),
    # "run": {partition: (records, seconds, waiting, settled)}}
    repair_runs: list[dict[str, Any]] = field(default_factory=list)
    # what the instances exported (with `export_interval_ms`): `customMetrics` rows, each with its "instance"
    exported: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, report: Report) -> None:
        kind = report.get("kind", "batch")
        if kind == "metrics":
            self.exported.extend({**row, "instance": report["instance"]} for row in report["rows"])
        elif kind == "timer":
            self.repaired += report.get("repaired", 0)
            if report.get("lag"):
                self.lag_samples.append((time.monotonic() - self.started, dict(report["lag"])))
            if report.get("run"):
                keys = ("instance", "started_at", "ended_at")
                self.repair_runs.append({**{k: report[k] for k in keys}, "run": dict(report["run"])})
        elif kind == "batch":
            self.ranges.extend(report["ranges"])
            self.latency.update(report.get("latency", {}))
