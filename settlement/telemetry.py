"""Telemetry with OpenTelemetry, the way Azure Functions Python apps report to Application Insights.

With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, the Azure Monitor distro (`azure-monitor-opentelemetry`) is
configured once per process; without it nothing is configured and the OpenTelemetry API stays a no-op (tests
install in-memory providers). Every import happens on the first batch, never at import of `function_app`, so
the cold start does not move.

Per batch: one span `settle batch` linked to the W3C trace contexts found in the input records' `traceparent`
headers. Settlements carry their input's valid `traceparent` forward, with or without a tracer provider (with
one, the batch span's when the input had none), and `settlement.batch.traceparent` names the batch span;
dead letters keep the record's own headers, which hold its `traceparent`. Metrics: settlements by
disposition, dead letters by reason, batch size, batch duration, registry lookups, and the settlement lag
the repair measures on every run (`settlement.lag.records`, `settlement.lag.seconds`, per source partition).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

TRACEPARENT = "traceparent"
BATCH_TRACEPARENT = "settlement.batch.traceparent"
# Settlement lag, per source partition (attributes `topic`, `partition`): between the trigger group's committed
# offset and the ledger's settled position (`<group>.settled`), in records and in seconds since the oldest such
# record was written. Recorded by every repair run (settlement/repair.py); 0 when nothing waits.
LAG_RECORDS = "settlement.lag.records"
LAG_SECONDS = "settlement.lag.seconds"
_MAX_LINKS = 128
_lock = threading.Lock()
_instruments: Any = None


class _Instruments:
    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.trace = trace
        # The API's own providers, in place until an SDK provider is installed: their spans record nothing.
        self.no_tracing = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        self.propagator = TraceContextTextMapPropagator()
        self.tracer = trace.get_tracer("settlement")
        meter = metrics.get_meter("settlement")
        self.settlements = meter.create_counter("settlement.settlements", "{record}", "settlements by disposition")
        self.dead_letters = meter.create_counter("settlement.dead_letters", "{record}", "dead letters by reason")
        self.batch_size = meter.create_histogram("settlement.batch.size", "{record}", "records per batch")
        self.batch_duration = meter.create_histogram("settlement.batch.duration", "ms", "time to settle a batch")
        self.registry_lookups = meter.create_counter("settlement.registry.lookups", "{request}", "registry requests")
        self.lag_records = meter.create_gauge(
            LAG_RECORDS, "{record}", "records the trigger group committed past that are not settled yet"
        )
        self.lag_seconds = meter.create_gauge(
            LAG_SECONDS, "s", "age of the oldest record the trigger group committed past that is not settled yet"
        )


def _configure_azure_monitor() -> None:
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(logger_name="settlement")


def instruments() -> Any:
    """The process's instruments, built (and Azure Monitor configured) on first use; None without OpenTelemetry."""
    global _instruments
    if _instruments is None:
        with _lock:
            if _instruments is None:
                try:
                    _configure_azure_monitor()
                    _instruments = _Instruments()
                except ImportError:
                    _instruments = False
    return _instruments or None


def _context_of(inst: Any, headers: Sequence[tuple[str, bytes]]) -> Any:
    """The span context of a record's `traceparent` header, if it carries a valid one."""
    for name, value in headers:
        if name == TRACEPARENT:
            ctx = inst.propagator.extract({TRACEPARENT: value.decode("ascii", "replace")})
            span_context = inst.trace.get_current_span(ctx).get_span_context()
            return span_context if span_context.is_valid else None
    return None


class BatchSpan:
    """The span of one batch, and what outputs need of it."""

    def __init__(self, span: Any, inst: Any) -> None:
        self.span = span
        self._inst = inst
        self.traceparent = b""
        if span is not None and span.get_span_context().is_valid:
            carrier: dict[str, str] = {}
            inst.propagator.inject(carrier, context=inst.trace.set_span_in_context(span))
            self.traceparent = carrier.get(TRACEPARENT, "").encode()

    def output_headers(self, input_headers: Sequence[tuple[str, bytes]]) -> Sequence[tuple[str, bytes]]:
        """Headers a settlement carries: its input's trace context forward, and the batch span's.

        The input's context is forwarded whether or not this process exports spans (OpenTelemetry's API
        propagates without an SDK): tracing downstream must not depend on this app's exporter. A record
        with no headers costs one truth test and shares the empty result."""
        own = _valid_traceparent(self._inst, input_headers) if input_headers else None
        if not self.traceparent:
            return ((TRACEPARENT, own),) if own else ()
        return [(TRACEPARENT, own or self.traceparent), (BATCH_TRACEPARENT, self.traceparent)]


def _valid_traceparent(inst: Any, headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    """The record's `traceparent` value, if the W3C propagator reads a valid context from it: an invalid
    one is dropped, as the W3C spec says a receiver must, rather than passed on."""
    for name, value in headers:
        if name == TRACEPARENT:
            return value if inst is not None and _context_of(inst, ((name, value),)) is not None else None
    return None


@contextmanager
def batch_span(records: Sequence[Any]) -> Iterator[BatchSpan]:
    """A span for one batch, linked to the trace contexts its records carry."""
    inst = instruments()
    if inst is None or isinstance(inst.trace.get_tracer_provider(), inst.no_tracing):
        yield BatchSpan(None, inst)  # no tracer provider installed: spans would be dropped, skip the link scan
        return
    links: list[Any] = []
    seen: set[int] = set()
    for record in records:
        if record.headers:
            span_context = _context_of(inst, record.headers)
            if span_context is not None and span_context.span_id not in seen and len(links) < _MAX_LINKS:
                seen.add(span_context.span_id)
                links.append(inst.trace.Link(span_context))
    with inst.tracer.start_as_current_span(
        "settle batch",
        kind=inst.trace.SpanKind.CONSUMER,
        links=links,
        attributes={"messaging.batch.message_count": len(records)},
    ) as span:
        yield BatchSpan(span, inst)


def record_batch(
    span: BatchSpan, dispositions: Counter[str], reasons: Counter[str], size: int, duration_ms: float
) -> None:
    """The batch's metrics, and its outcome on its span."""
    inst = instruments()
    if inst is None:
        return
    for disposition, n in dispositions.items():
        inst.settlements.add(n, {"disposition": disposition})
    for reason, n in reasons.items():
        inst.dead_letters.add(n, {"reason": reason})
    inst.batch_size.record(size)
    inst.batch_duration.record(duration_ms)
    if span.span is not None:
        span.span.set_attribute("settlement.settled", sum(dispositions.values()))
        span.span.set_attribute("settlement.dead_lettered", sum(reasons.values()))


def count_registry_lookup(kind: str) -> None:
    """One registry request (once per schema id per process, or per unknown id per batch)."""
    inst = instruments()
    if inst is not None:
        inst.registry_lookups.add(1, {"kind": kind})


def record_lag(topic: str, partition: int, records: int, seconds: float) -> None:
    """One partition's settlement lag, as a repair run measured it."""
    inst = instruments()
    if inst is not None:
        attributes = {"topic": topic, "partition": partition}
        inst.lag_records.set(records, attributes)
        inst.lag_seconds.set(seconds, attributes)
