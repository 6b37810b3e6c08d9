"""Telemetry with OpenTelemetry, the way Azure Functions Python apps report to Application Insights.

With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, the Azure Monitor distro (`azure-monitor-opentelemetry`) is
configured once per process; without it nothing is configured and the OpenTelemetry API stays a no-op (tests
install in-memory providers). Every import happens on the first batch, never at import of `function_app`, so
the cold start does not move.

Per batch: one span `settle batch` linked to the W3C trace contexts found in the input records' `traceparent`
headers. Settlements carry their input's valid `traceparent` forward, with or without a tracer provider (with
one, the batch span's when the input had none), and `settlement.batch.traceparent` names the batch span;
dead letters keep the record's own headers, which hold its `traceparent`.

Metrics are a contract (docs/metrics.md lists each instrument, its unit, attributes and when it is recorded;
the alert rules that scripts/deploy.sh creates query them by name, and tests/unit/test_metrics_contract.py holds
the table, the code and the alerts to one another): settlements by disposition, dead letters by reason, failed
and retried batches, trade-to-settlement latency, batch size, batch duration, registry lookups, and the
settlement lag the repair measures on every run (`settlement.lag.records`, `settlement.lag.seconds`, per
source partition), exported only while fresh: for one export interval after the run that measured it.

The Azure Monitor distro is configured at most once per process, by whichever side gets there first: on Azure
the Python worker does it at its start when `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true` (what deploy.sh
sets, because only then does the worker also put each invocation under the host's trace context), before any
batch; this module then finds an SDK provider installed and leaves it alone. Where nothing configured it (a
local host, a worker without that setting) and a connection string is set, this module configures it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

TRACEPARENT = "traceparent"
BATCH_TRACEPARENT = "settlement.batch.traceparent"
# Settlement lag, per source partition (attributes `topic`, `partition`): between the trigger group's committed
# offset and the ledger's settled position (`<group>.settled`), in records and in seconds the settled position has
# stood behind the trigger's offset. Recorded by every repair run (settlement/delivery/exactly_once/repair.py); 0 when
# nothing waits.
LAG_RECORDS = "settlement.lag.records"
LAG_SECONDS = "settlement.lag.seconds"
# ... and the trigger's own lag as the repair reads it (the partition's end minus the trigger group's offset):
# records waiting to be delivered, which the alert "no settlement while records wait" needs beside the above.
TRIGGER_LAG = "settlement.trigger.lag.records"
# The instruments' names: each is a contract with the alert rules and the workbook (docs/metrics.md).
SETTLEMENTS = "settlement.settlements"
DEAD_LETTERS = "settlement.dead_letters"
BATCH_SIZE = "settlement.batch.size"
BATCH_DURATION = "settlement.batch.duration"
REGISTRY_LOOKUPS = "settlement.registry.lookups"
BATCHES_FAILED = "settlement.batches.failed"
BATCHES_RETRIED = "settlement.batches.retried"
LATENCY = "settlement.latency"
_MAX_LINKS = 128
# Batches that failed in this process, remembered by their first record's coordinates and size so that the same
# batch run again (the host's `@app.retry` and `maxRetries` re-run it at once, in this process; the sink
# connector re-posts it) counts as a retry. Bounded: a batch retried after this many other failures is not seen.
_MAX_FAILED_REMEMBERED = 1024

__all__ = [
    "BATCHES_FAILED",
    "BATCHES_RETRIED",
    "BATCH_DURATION",
    "BATCH_SIZE",
    "BATCH_TRACEPARENT",
    "DEAD_LETTERS",
    "LAG_RECORDS",
    "LAG_SECONDS",
    "LATENCY",
    "REGISTRY_LOOKUPS",
    "SETTLEMENTS",
    "TRACEPARENT",
    "TRIGGER_LAG",
    "BatchSpan",
    "LagReading",
    "already_configured",
    "batch_span",
    "count_registry_lookup",
    "export_interval_s",
    "instruments",
    "record_batch",
    "record_lag",
    "record_latency",
]


class _ProcessTelemetry:
    """This process's telemetry state, the one piece of module-level state in `settlement/` besides protoc's guard
    (tests/unit/test_module_state.py names both). It is per process because OpenTelemetry's is: the API's tracer and
    meter providers are process-global and set once, instruments are deduplicated by name (a second registration of
    `settlement.lag.records` returns the first, its callbacks included), so the instruments, and the lag readings
    their gauge callbacks report, cannot belong to one composition root among several in a process. The failed
    batches remembered for the retry count go with them: the host re-runs a failed batch in the process it failed
    in, whichever root settles it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instruments: Any = None  # built on first use; False without OpenTelemetry
        self.failed: OrderedDict[tuple[str, int, int, int], None] = OrderedDict()
        self.lag: dict[tuple[str, int], LagReading] = {}  # the latest reading per (topic, partition): see record_lag
        # Its own lock: the gauges' callbacks take it inside the SDK's collection, which must never wait on `lock`,
        # held while the instruments are created.
        self.lag_lock = threading.Lock()
        self.clock: Callable[[], float] = time.monotonic  # the clock of lag readings (a test may replace it)


_PROCESS = _ProcessTelemetry()


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
        self.settlements = meter.create_counter(SETTLEMENTS, "{record}", "settlements by disposition")
        self.dead_letters = meter.create_counter(DEAD_LETTERS, "{record}", "dead letters by reason")
        self.batch_size = meter.create_histogram(BATCH_SIZE, "{record}", "records per batch")
        self.batch_duration = meter.create_histogram(BATCH_DURATION, "ms", "time to settle a batch")
        self.registry_lookups = meter.create_counter(REGISTRY_LOOKUPS, "{request}", "registry requests")
        self.batches_failed = meter.create_counter(
            BATCHES_FAILED, "{batch}", "batches that raised, so that the host (or the connector) runs them again"
        )
        self.batches_retried = meter.create_counter(
            BATCHES_RETRIED, "{batch}", "batches run again after they failed in this process"
        )
        self.latency = meter.create_histogram(
            LATENCY, "s", "from a trade's record timestamp to its settlement's acknowledgement"
        )
        # Observable gauges: each export asks `_fresh_lag` for what a repair run of this process measured within
        # the last export interval, and gets nothing else (see `record_lag`).
        meter.create_observable_gauge(
            LAG_RECORDS,
            [_observer("records")],
            "{record}",
            "records the trigger group committed past that are not settled yet",
        )
        meter.create_observable_gauge(
            TRIGGER_LAG,
            [_observer("waiting")],
            "{record}",
            "records in the source partition the trigger group has not committed past",
        )
        meter.create_observable_gauge(
            LAG_SECONDS,
            [_observer("seconds")],
            "s",
            "how long the settled position has stood behind the trigger group's committed offset",
        )


def already_configured() -> bool:
    """True when an SDK tracer or meter provider is installed in this process: the Python worker configured the
    Azure Monitor distro (`PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`), or a test or host installed its
    own. The API's defaults are proxies until then; a second configuration would export everything twice."""
    from opentelemetry import metrics, trace

    meter_provider = type(metrics.get_meter_provider()).__name__
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider) or meter_provider not in (
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    )


def _configure_azure_monitor() -> None:
    """Configure the distro once, unless something in this process already did (see the module's docstring)."""
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING") and not already_configured():
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(logger_name="settlement")


def instruments() -> Any:
    """The process's instruments, built (and Azure Monitor configured) on first use; None without OpenTelemetry."""
    state = _PROCESS
    if state.instruments is None:
        with state.lock:
            if state.instruments is None:
                try:
                    _configure_azure_monitor()
                    state.instruments = _Instruments()
                except ImportError:
                    state.instruments = False
    return state.instruments or None


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


def _batch_key(records: Sequence[Any]) -> tuple[str, int, int, int] | None:
    """What identifies a batch when it is run again: its first record's coordinates and its size."""
    if not records:
        return None
    first = records[0]
    return (first.topic, first.partition, first.offset, len(records))


def _note_start(inst: Any, key: tuple[str, int, int, int] | None) -> None:
    """Count a retry when this batch failed in this process before."""
    if key is None:
        return
    failed = _PROCESS.failed
    with _PROCESS.lock:
        seen = key in failed
        if seen:
            del failed[key]
    if seen:
        inst.batches_retried.add(1)


def _note_failure(inst: Any, key: tuple[str, int, int, int] | None, exc: BaseException) -> None:
    """Count a failed batch by the error's class name, and remember it so that its next run counts as a retry."""
    inst.batches_failed.add(1, {"error.type": type(exc).__name__})
    if key is None:
        return
    failed = _PROCESS.failed
    with _PROCESS.lock:
        failed[key] = None
        while len(failed) > _MAX_FAILED_REMEMBERED:
            failed.popitem(last=False)


@contextmanager
def batch_span(records: Sequence[Any]) -> Iterator[BatchSpan]:
    """A span for one batch, linked to the trace contexts its records carry; a batch that raises out of it is
    counted as failed (`settlement.batches.failed`), and the same batch run again as retried."""
    inst = instruments()
    if inst is None:
        yield BatchSpan(None, inst)
        return
    key = _batch_key(records)
    _note_start(inst, key)
    try:
        with _span(inst, records) as span:
            yield span
    except Exception as exc:
        _note_failure(inst, key, exc)
        raise


@contextmanager
def _span(inst: Any, records: Sequence[Any]) -> Iterator[BatchSpan]:
    if isinstance(inst.trace.get_tracer_provider(), inst.no_tracing):
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


def record_latency(timestamps_ms: Iterable[int | None], now: float | None = None) -> None:
    """Trade-to-settlement latency, one value per batch: from its oldest settled record's timestamp (the trade's,
    as ksqlDB writes it; the settlement carries the same one) to now, after the batch's outputs were acknowledged:
    the batch's worst. Not one value per record: an SDK histogram costs about 13 µs a `record` here, more than
    settling the record (bench (k)). The timestamps are not read at all without instruments."""
    inst = instruments()
    if inst is None:
        return
    oldest = min((stamp for stamp in timestamps_ms if stamp is not None), default=None)
    if oldest is not None:
        at_ms = (time.time() if now is None else now) * 1000
        inst.latency.record(max(0.0, (at_ms - oldest) / 1000))


def count_registry_lookup(kind: str) -> None:
    """One registry request (once per schema id per process, or per unknown id per batch)."""
    inst = instruments()
    if inst is not None:
        inst.registry_lookups.add(1, {"kind": kind})


@dataclass(frozen=True)
class LagReading:
    """What one repair run measured of one partition, and when (time.monotonic)."""

    records: int
    seconds: float
    waiting: int
    at: float


def export_interval_s() -> float:
    """The metric export interval: what OpenTelemetry's periodic reader (the Azure Monitor distro's) reads,
    `OTEL_METRIC_EXPORT_INTERVAL` in milliseconds, 60 s by default. A lag reading is fresh for this long."""
    try:
        millis = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000"))
    except ValueError:
        millis = 60000.0  # the SDK falls back to its default too
    return (millis if millis > 0 else 60000.0) / 1000


def record_lag(topic: str, partition: int, records: int, seconds: float, waiting: int = 0) -> None:
    """One partition's settlement lag, and the records waiting for the trigger, as a repair run measured them.

    Kept as this process's latest reading of the partition, exported only while fresh: the lag gauges are
    observable, and their callbacks report a reading for at most one export interval after the run that made it.
    A synchronous gauge would not do: OpenTelemetry's SDK (1.45, with the cumulative temporality the Azure
    Monitor exporter leaves gauges at) re-exports its last value every interval for as long as the process lives.
    The repair runs on whichever instance the platform wakes, so an instance that last measured 0 kept exporting
    0 while another measured the real lag (the lag alert could not fire), and one that last measured records
    waiting kept exporting them (the stalled alert could fire on a quiet day)."""
    if instruments() is None:
        return
    state = _PROCESS
    reading = LagReading(records, seconds, waiting, state.clock())
    with state.lag_lock:
        state.lag[(topic, partition)] = reading


def _fresh_lag() -> list[tuple[dict[str, Any], LagReading]]:
    """This process's latest reading of each partition, if a repair run made it within one export interval;
    older ones are forgotten."""
    state = _PROCESS
    horizon = state.clock() - export_interval_s()
    with state.lag_lock:
        lag = state.lag
        for key in [k for k, r in lag.items() if r.at < horizon]:
            del lag[key]
        return [({"topic": topic, "partition": partition}, r) for (topic, partition), r in lag.items()]


def _observer(field: str) -> Callable[[Any], Iterable[Any]]:
    """The callback of one lag gauge: an observation per fresh reading."""

    def observe(_options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        return [Observation(getattr(reading, field), attributes) for attributes, reading in _fresh_lag()]

    return observe
