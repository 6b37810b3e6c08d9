"""What an instance would send Application Insights: its metric stream as `customMetrics` rows, captured locally.

On Azure the Azure Monitor distro exports the app's metrics every `OTEL_METRIC_EXPORT_INTERVAL` (60 s) through a
periodic reader; each point becomes one `customMetrics` row. Locally an instance process can run the same periodic
reader with an exporter that hands the rows to the host instead of sending them (the experiments' probes install
it, localrun/experiments/probes.py, through the platform's seam): the temporality per instrument
kind is the Azure Monitor exporter's own (`APPLICATION_INSIGHTS_METRIC_TEMPORALITIES`), and each point is converted
by the exporter's own conversion (`_convert_point_to_envelope`, read at azure-monitor-opentelemetry-exporter
1.0.0b58, the version requirements.txt pins), so the rows are what the service would ingest, less the transport.
The alert tests evaluate the alert conditions over these rows (tests/integration/test_alerts.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

Row = dict[str, Any]


class CapturingExporter(MetricExporter):
    """A metric exporter with the Azure Monitor exporter's temporalities that passes each export's rows to `emit`."""

    def __init__(self, emit: Callable[[list[Row]], None]) -> None:
        from azure.monitor.opentelemetry.exporter.export.metrics._exporter import (
            APPLICATION_INSIGHTS_METRIC_TEMPORALITIES,
        )

        super().__init__(preferred_temporality=APPLICATION_INSIGHTS_METRIC_TEMPORALITIES)  # type: ignore[arg-type]
        self._emit = emit

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        rows = rows_of(metrics_data)
        if rows:
            self._emit(rows)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def rows_of(metrics_data: MetricsData | None) -> list[Row]:
    """The `customMetrics` rows of one export, converted as the Azure Monitor exporter converts each point."""
    from azure.monitor.opentelemetry.exporter.export.metrics._exporter import _convert_point_to_envelope

    rows: list[Row] = []
    exported_at = time.time()
    for resource_metrics in metrics_data.resource_metrics if metrics_data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    envelope = _convert_point_to_envelope(point, metric.name, resource_metrics.resource)
                    data: Any = envelope.data.base_data  # type: ignore[union-attr]
                    [value] = data.metrics
                    rows.append(
                        {
                            "timestamp": point.time_unix_nano / 1e9,
                            "exported_at": exported_at,
                            "name": value.name,
                            "value": value.value,
                            "valueCount": value.count,
                            "valueMin": value.min,
                            "valueMax": value.max,
                            "customDimensions": dict(data.properties or {}),
                        }
                    )
    return rows


def periodic_reader(emit: Callable[[list[Row]], None], interval_ms: float) -> Any:
    """A periodic reader exporting every `interval_ms`, as the distro's does every `OTEL_METRIC_EXPORT_INTERVAL`."""
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return PeriodicExportingMetricReader(CapturingExporter(emit), export_interval_millis=interval_ms)
