"""The static producer: one confluent-kafka `Producer` per worker process, reused by every invocation.

Building a producer costs a TCP + TLS + SASL handshake and metadata fetch; doing that per invocation would
dominate a batch's latency and exhaust broker connections as the app scales out. So `SharedProducer` builds it
lazily on first use and keeps it; the process's composition root (settlement/runtime/root.py) holds the one
`SharedProducer`, and with it lives the producer for as long as the process. `DeliveryTracker` scopes
acknowledgements to one batch: the function returns only once every record that batch produced is acknowledged,
or raises so the batch is retried.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from settlement.core.deadline import Deadline
from settlement.core.errors import DeliveryError
from settlement.core.plan import Plain

# Settings that make "acknowledged" mean durable and make retries safe; user JSON config may not weaken them.
DURABILITY: Mapping[str, Any] = MappingProxyType({"acks": "all", "enable.idempotence": True})
# linger.ms 5 (librdkafka's default) lets concurrent invocations' records share requests; a batch never pays
# it, because `DeliveryTracker.wait` flushes, which sends at once. (linger.ms 0 was slower and erratic: 500
# records left in many small requests, median 2.5 ms and p90 9 ms to acknowledge, against 1.1 / 1.2 ms.)
DEFAULTS: Mapping[str, Any] = MappingProxyType({"compression.type": "lz4", "linger.ms": 5})
# How long one flush inside `wait` may block: while other invocations' records are in flight, flush cannot
# return on our records alone, so this bounds how late a batch can notice its own acknowledgements.
_FLUSH_SLICE_S = 0.005


class RecordTooLarge(Exception):
    """The producer or broker refused one record as too large: retrying cannot fix it, so it is that record's
    fate (dead-lettered shrunk), never the batch's."""


# librdkafka's per-record refusals that no retry can fix.
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE})


def is_fatal(err: object) -> bool:
    """A fatal error (e.g. an idempotence sequence gap) makes the producer unusable for good: the next batch
    must get a new one."""
    return isinstance(err, KafkaError) and (err.fatal() or err.code() == KafkaError._FATAL)


def _ignore(_err: object) -> None:
    """A tracker's default: nobody to tell of a fatal error (a transactional producer is dropped by the ledger)."""


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The `KafkaError` a confluent-kafka exception carries, if any."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


class _FencingIsExpected(logging.Filter):
    """librdkafka logs a fenced transactional producer at ERROR and CRITICAL ("fenced by a newer instance",
    "Fatal transaction error"). For the ledger that is an expected turn of events (another instance, or the
    repair, took the partition; or the coordinator's timeout aborted a frozen holder's transaction), which the
    ledger reports itself at warning with the partition: kept, at warning, so that an alert on errors means an
    error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING and "fenced" in record.getMessage().lower():
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


LIBRDKAFKA_LOG = logging.getLogger("settlement.librdkafka")
LIBRDKAFKA_LOG.addFilter(_FencingIsExpected())


def on_error(err: KafkaError) -> None:
    """librdkafka's error callback: logged (`SharedProducer` also notes a fatal one for its next batch)."""
    LIBRDKAFKA_LOG.warning("producer error: %s", err)


def build_config(base: Mapping[str, Any], extra: Mapping[str, Any], delivery_timeout_ms: int) -> dict[str, Any]:
    """Merge user config over defaults, then pin durability: a user cannot turn acks=all off by accident."""
    conf: dict[str, Any] = {**DEFAULTS, **base, **extra}
    for key, value in DURABILITY.items():
        if key in extra and str(extra[key]).lower() != str(value).lower():
            raise ValueError(f"producer setting {key}={extra[key]!r} is not allowed: the pipeline requires {value}")
    conf.update(DURABILITY)
    # librdkafka's own log lines (broker down, auth failures) go through Python logging, so the Functions
    # worker ships them with the app's logs instead of losing them on stderr.
    conf.setdefault("logger", LIBRDKAFKA_LOG)
    conf.setdefault("error_cb", on_error)
    conf["delivery.timeout.ms"] = delivery_timeout_ms
    conf.setdefault("request.timeout.ms", min(30_000, delivery_timeout_ms))
    return conf


def max_message_bytes(conf: Mapping[str, Any]) -> int:
    """The producer's per-record limit (librdkafka `message.max.bytes`, default 1,000,000)."""
    return int(conf.get("message.max.bytes", 1_000_000))


class SharedProducer:
    """The process's static producer, built on first use and reused; rebuilt once after a fatal error (its
    undelivered records are the failed batch's, retried). The composition root holds one per process."""

    def __init__(self, conf: Mapping[str, Any]) -> None:
        # The callbacks handed to librdkafka hold the flag, never this object: a producer whose callback held its
        # owner would form a cycle, and a librdkafka client would then be destroyed by the garbage collector.
        fatal = threading.Event()
        self._fatal = fatal
        self._note_fatal: Callable[[object], None] = functools.partial(_set_if_fatal, fatal)
        configured: Callable[[KafkaError], None] = conf.get("error_cb") or on_error
        self._conf = {**conf, "error_cb": functools.partial(_on_shared_error, fatal, configured)}
        self._lock = threading.Lock()
        self._producer: Producer | None = None

    def get(self) -> Producer:
        """The producer, built now if there is none (or the last one failed fatally)."""
        producer = self._producer
        if producer is None or self._fatal.is_set():
            with self._lock:
                if self._fatal.is_set():
                    self._fatal.clear()
                    self._producer = None  # unusable; its undelivered records are the failed batch's, retried
                if self._producer is None:
                    self._producer = Producer(self._conf)
                producer = self._producer
        return producer

    def current(self) -> Producer | None:
        """The producer if one is built (nothing is built here)."""
        return self._producer

    def note_fatal(self, err: object) -> None:
        """Have the next batch get a new producer if `err` made this one unusable."""
        self._note_fatal(err)

    def tracker(self) -> DeliveryTracker:
        """One batch's tracker on the producer (looked up per batch: after a fatal error, a new one)."""
        return DeliveryTracker(self.get(), on_fatal=self._note_fatal)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and drop the producer (the root's close: tests and the local host between runs)."""
        with self._lock:
            if self._producer is not None:
                self._producer.flush(timeout_s)
            self._producer = None


def _set_if_fatal(flag: threading.Event, err: object) -> None:
    if is_fatal(err):
        flag.set()


def _on_shared_error(flag: threading.Event, configured: Callable[[KafkaError], None], err: KafkaError) -> None:
    """The shared producer's librdkafka error callback: a fatal error noted for the next batch, then the configured
    callback (`on_error`, or the managed identity's, which notes a refused token first)."""
    _set_if_fatal(flag, err)
    configured(err)


class DeliveryTracker:
    """One batch's acknowledgements on the shared producer. It waits for its own records only (polling serves
    every batch's callbacks, each to its own tracker), never for other invocations' records."""

    def __init__(self, producer: Producer, on_fatal: Callable[[object], None] = _ignore) -> None:
        self._producer = producer
        self._on_fatal = on_fatal  # told of an error that made the producer unusable (`SharedProducer.note_fatal`)
        # Records handed to the producer (only the batch's own thread adds) and delivery reports received
        # (any thread serving callbacks appends; list.append is atomic, so a success costs no lock).
        self._queued = 0
        self._reported: list[None] = []
        self._errors: list[str] = []
        self._too_large: list[int] = []
        self._batched: list[tuple[Sequence[int], Sequence[Plain]]] = []  # (indexes, messages) per call
        self._lock = threading.Lock()

    def _delivered_in_batch(self, err: KafkaError | None, msg: Message) -> None:
        """One callback for every record of `produce_plain`; its index is looked up only on an error."""
        if err is None:
            self._reported.append(None)
            return
        value = msg.value()
        index = next(  # errors only: a scan is fine
            (i for indexes, messages in self._batched for i, m in zip(indexes, messages, strict=True) if m[1] == value),
            -1,
        )
        self._delivered(index, err, msg)

    def _delivered(self, index: int, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            self._reported.append(None)
            if err is None:
                return
            if err.code() in _TOO_LARGE:
                self._too_large.append(index)
                return
            self._on_fatal(err)
            self._errors.append(f"{err.name()}: {err.str()}")

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        deadline: Deadline | None = None,
        index: int = -1,
        partition: int = -1,
        timestamp: int | None = None,
    ) -> None:
        """Hand one record to the producer, stamped `timestamp` (epoch ms; None: the producer's clock); raise
        `RecordTooLarge` for a record it refuses by size."""
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers or []),
                    partition=partition,
                    on_delivery=functools.partial(self._delivered, index),
                    timestamp=timestamp or 0,  # 0: the producer's clock
                )
                break
            except BufferError:
                # Local queue full: serve callbacks to make room, but never wait past the batch deadline.
                if deadline is not None and deadline.passed():
                    raise DeliveryError("producer queue stayed full until the delivery deadline") from None
                self._producer.poll(0.05)
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None and err.code() in _TOO_LARGE:
                    raise RecordTooLarge(err.str()) from None
                self._on_fatal(err)
                raise DeliveryError(f"the producer refused a record: {exc}") from None
        self._queued += 1

    def produce_plain(
        self,
        topic: str,
        indexes: Sequence[int],
        messages: Sequence[Plain],
        deadline: Deadline | None = None,
        partition: int = -1,
    ) -> list[int]:
        """Hand settlements without headers (`Plain` tuples, with their batch indexes) to the producer, each
        stamped with its trade's time. One `produce` per record: confluent-kafka's `produce_batch` would enqueue
        them in one call but refuses a timestamp (NotImplementedError in 2.16), and costs 0.3-0.6 µs a record
        less, which the analysis's event time is worth. One shared callback: a delivery error finds its record
        by value, so values must be distinct (settlements name their source). Returns the indexes the producer
        refused as too large."""
        self._batched.append((indexes, messages))
        produce, delivered = self._producer.produce, self._delivered_in_batch
        refused: list[int] = []
        queued = 0
        try:
            for index, (key, value, stamp) in zip(indexes, messages, strict=True):
                while True:
                    try:
                        produce(topic, value, key, partition, delivered, timestamp=stamp)
                    except BufferError:
                        # Local queue full: serve callbacks to make room, but never wait past the batch deadline.
                        if deadline is not None and deadline.passed():
                            raise DeliveryError("producer queue stayed full until the delivery deadline") from None
                        self._producer.poll(0.05)
                        continue
                    except KafkaException as exc:
                        err = kafka_error(exc)
                        if err is None or err.code() not in _TOO_LARGE:
                            self._on_fatal(err)
                            raise DeliveryError(f"the producer refused a record: {exc}") from None
                        refused.append(index)
                    else:
                        queued += 1
                    break
        finally:
            self._queued += queued
        return refused

    def refuse(self, index: int) -> None:
        """Count a record the producer refused locally as too large among those `wait` returns."""
        with self._lock:
            self._too_large.append(index)

    def wait(self, deadline: Deadline) -> list[int]:
        """Block until every record is acknowledged. Return the indexes of records the broker refused as too
        large (the caller dead-letters them shrunk); raise `DeliveryError` on any other failure or at the
        deadline."""
        while True:
            with self._lock:
                pending, errors = self._queued - len(self._reported), list(self._errors)
            if errors:
                raise DeliveryError(f"{len(errors)} record(s) not delivered; first error: {errors[0]}")
            if pending == 0:
                with self._lock:
                    too_large, self._too_large = self._too_large, []
                return too_large
            remaining = deadline.left()
            if remaining <= 0:
                raise DeliveryError(f"{pending} record(s) not acknowledged before the delivery deadline")
            # flush, not poll: it makes librdkafka send queued records now instead of after linger.ms, and
            # serves delivery callbacks (ours and other invocations') while it waits.
            self._producer.flush(min(remaining, _FLUSH_SLICE_S))
