"""The lag gauges export a repair run's reading for one export interval after the run and never again; a
synchronous gauge, under the temporality the Azure Monitor exporter gives gauges, would re-export its last value
forever (the reason they are observable). In a fresh process (one meter provider a process), with OpenTelemetry's
in-memory reader set to the real exporter's temporalities and a clock the child moves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ["OTEL_METRIC_EXPORT_INTERVAL"] = "60000"
from azure.monitor.opentelemetry.exporter.export.metrics._exporter import APPLICATION_INSIGHTS_METRIC_TEMPORALITIES
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader(preferred_temporality=APPLICATION_INSIGHTS_METRIC_TEMPORALITIES)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
from settlement import telemetry

clock = [1000.0]
telemetry._PROCESS.clock = lambda: clock[0]
control = metrics.get_meter("control").create_gauge("control.sync.gauge")


def export():
    data = reader.get_metrics_data()
    out = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    out[f"{m.name} {p.attributes.get('partition', '')}".strip()] = p.value
    return out


steps = []
telemetry.record_lag("user_trades", 0, 120, 75.0, 4)
telemetry.record_lag("user_trades", 1, 0, 0.0, 0)
control.set(7)
steps.append(export())               # the run's readings, at the next export
clock[0] += 30
telemetry.record_lag("user_trades", 0, 0, 0.0, 0)  # the next run booked partition 0
steps.append(export())               # partition 0's new reading; partition 1's still within the interval
clock[0] += 45
steps.append(export())               # partition 1's reading is 75 s old: gone; partition 0's 45 s: kept
clock[0] += 60
steps.append(export())               # no run for a whole interval: this process exports no lag at all
print(json.dumps(steps))
"""


def _exports() -> list[dict[str, float]]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_a_reading_is_exported_for_one_interval_after_its_run_and_never_after() -> None:
    first, second, third, fourth = _exports()
    lag = ("settlement.lag.records", "settlement.lag.seconds", "settlement.trigger.lag.records")
    assert {k: v for k, v in first.items() if k.startswith(lag)} == {
        "settlement.lag.records 0": 120,
        "settlement.lag.seconds 0": 75.0,
        "settlement.trigger.lag.records 0": 4,
        "settlement.lag.records 1": 0,
        "settlement.lag.seconds 1": 0.0,
        "settlement.trigger.lag.records 1": 0,
    }
    assert second["settlement.lag.records 0"] == 0 and second["settlement.lag.records 1"] == 0
    assert "settlement.lag.records 1" not in third and third["settlement.lag.seconds 0"] == 0.0
    assert not any(k.startswith(lag) for k in fourth), fourth


def test_a_synchronous_gauge_would_export_its_last_value_for_ever() -> None:
    # the control: what the lag gauges were, and why they are not any more (opentelemetry-sdk 1.45)
    exports = _exports()
    assert [e.get("control.sync.gauge") for e in exports] == [7, 7, 7, 7]
