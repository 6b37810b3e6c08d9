"""Spans and metrics of a batch with poison records, read back with OpenTelemetry's in-memory exporters; trace
context carried from the input records to their settlements and dead letters."""

from __future__ import annotations

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import function_app
from settlement import telemetry
from tests.integration.pipeline import Pipeline, as_events
from tests.integration.test_registry import TRADE
from tests.kafka_helpers import drain

pytestmark = pytest.mark.integration
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENTS = ["00f067aa0ba902b7", "00f067aa0ba902b8"]


@pytest.fixture(scope="module")
def exporters():  # type: ignore[no-untyped-def]
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)  # the process's providers: set once, before the first batch
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return spans, reader


def _points(reader: InMemoryMetricReader) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    value = getattr(point, "count", None) if value is None else value
                    out.setdefault(metric.name, {})[tuple(sorted(point.attributes.items()))] = value
    return out


def test_a_batch_with_poison_records_reports_its_span_metrics_and_trace_context(pipeline: Pipeline, exporters) -> None:
    spans, reader = exporters
    from confluent_kafka import Producer

    ser, ctx = pipeline.serializer()
    good = ser(TRADE, ctx)
    p = Producer({"bootstrap.servers": pipeline.bootstrap})
    for i, (value, parent) in enumerate([(good, PARENTS[0]), (b"not protobuf", PARENTS[1]), (good, None), (b"", None)]):
        headers = [("traceparent", f"00-{TRACE_ID}-{parent}-01".encode())] if parent else []
        p.produce(pipeline.source, key=f"User_{i}", value=value, headers=headers, partition=0)
    p.flush(10)
    before = _points(reader)
    function_app.settle_user_trades(as_events(drain(pipeline.bootstrap, pipeline.source, 4)))

    [span] = [s for s in spans.get_finished_spans() if s.name == "settle batch"][-1:]
    assert span.attributes["messaging.batch.message_count"] == 4
    assert (span.attributes["settlement.settled"], span.attributes["settlement.dead_lettered"]) == (2, 2)
    assert sorted(format(link.context.span_id, "016x") for link in span.links) == PARENTS
    assert {format(link.context.trace_id, "032x") for link in span.links} == {TRACE_ID}

    after = _points(reader)
    settled = after["settlement.settlements"][(("disposition", "Completed"),)]
    assert settled - before.get("settlement.settlements", {}).get((("disposition", "Completed"),), 0) == 2
    dead = after["settlement.dead_letters"]
    assert dead[(("reason", "bad-magic-byte"),)] >= 1 and dead[(("reason", "empty-value"),)] >= 1
    assert after["settlement.batch.size"][()] >= 1 and after["settlement.batch.duration"][()] >= 1
    assert sum(after["settlement.registry.lookups"].values()) >= 1

    batch_tp = f"00-{format(span.context.trace_id, '032x')}-{format(span.context.span_id, '016x')}-".encode()
    settlements = drain(pipeline.bootstrap, pipeline.settlements, 2)
    carried = [dict(m.headers() or []) for m in settlements]
    assert carried[0]["traceparent"] == f"00-{TRACE_ID}-{PARENTS[0]}-01".encode()  # the input's, forward
    assert carried[1]["traceparent"].startswith(batch_tp)  # no context on the input: the batch span's
    assert all(h[telemetry.BATCH_TRACEPARENT].startswith(batch_tp) for h in carried)
    dead_letters = drain(pipeline.bootstrap, pipeline.dlq, 2)
    assert dict(dead_letters[0].headers() or [])["traceparent"] == f"00-{TRACE_ID}-{PARENTS[1]}-01".encode()


_NO_PROVIDER_CHILD = """
import os, sys
sys.path.insert(0, os.getcwd())
from opentelemetry import trace
import function_app
from tests.integration.pipeline import as_events
from tests.kafka_helpers import drain
function_app.settle_user_trades(as_events(drain(os.environ["KAFKA_BOOTSTRAP_SERVERS"], sys.argv[1], 4)))
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider", trace.get_tracer_provider()
"""


def test_trace_context_is_forwarded_by_a_process_with_no_tracer_provider(pipeline: Pipeline) -> None:
    # This test process installed an SDK provider (the fixture above); a fresh process has none, as a function
    # app without Application Insights has none.
    import subprocess
    import sys

    from confluent_kafka import Producer

    ser, ctx = pipeline.serializer()
    good = ser(TRADE, ctx)
    parents = [f"00-{TRACE_ID}-{PARENTS[0]}-01".encode(), f"00-{TRACE_ID}-{PARENTS[1]}-01".encode()]
    p = Producer({"bootstrap.servers": pipeline.bootstrap})
    p.produce(pipeline.source, key="User_1", value=good, headers=[("traceparent", parents[0])], partition=0)
    p.produce(pipeline.source, key="User_2", value=b"not protobuf", headers=[("traceparent", parents[1])], partition=0)
    p.produce(pipeline.source, key="User_3", value=good, partition=0)
    p.produce(pipeline.source, key="User_4", value=good, headers=[("traceparent", b"00-garbage-01")], partition=0)
    p.flush(10)
    subprocess.run([sys.executable, "-c", _NO_PROVIDER_CHILD, pipeline.source], check=True, timeout=120)
    by_user = {m.key(): dict(m.headers() or []) for m in drain(pipeline.bootstrap, pipeline.settlements, 3)}
    assert by_user[b"User_1"] == {"traceparent": parents[0]}  # forwarded, and no batch span without a provider
    assert by_user[b"User_3"] == {} and by_user[b"User_4"] == {}  # none given, an invalid one dropped
    [dead] = drain(pipeline.bootstrap, pipeline.dlq, 1)
    assert dict(dead.headers() or [])["traceparent"] == parents[1]
