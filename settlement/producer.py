"""The static producer: one confluent-kafka `Producer` per worker process, reused by every invocation.

Building a producer costs a TCP + TLS + SASL handshake and metadata fetch; doing that per invocation would
dominate a batch's latency and exhaust broker connections as the app scales out. So it is built lazily on
first use and kept at module level. `DeliveryTracker` scopes acknowledgements to one batch: the function
returns only once every record that batch produced is acknowledged, or raises so the batch is retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

# Settings that make "acknowledged" mean durable and make retries safe; user JSON config may not weaken them.
DURABILITY = {"acks": "all", "enable.idempotence": True}
DEFAULTS = {"compression.type": "lz4", "linger.ms": 5}

_lock = threading.Lock()
_producer: Producer | None = None


class DeliveryError(RuntimeError):
    """Some records of the batch were not acknowledged: the batch must be retried."""


def build_config(base: Mapping[str, Any], extra: Mapping[str, Any], delivery_timeout_ms: int) -> dict[str, Any]:
    """Merge user config over defaults, then pin durability: a user cannot turn acks=all off by accident."""
    conf: dict[str, Any] = {**DEFAULTS, **base, **extra}
    for key, value in DURABILITY.items():
        if key in extra and str(extra[key]).lower() != str(value).lower():
            raise ValueError(f"producer setting {key}={extra[key]!r} is not allowed: the pipeline requires {value}")
    conf.update(DURABILITY)
    # librdkafka's own log lines (broker down, auth failures) go through Python logging, so the Functions
    # worker ships them with the app's logs instead of losing them on stderr.
    conf.setdefault("logger", logging.getLogger("settlement.librdkafka"))
    conf["delivery.timeout.ms"] = delivery_timeout_ms
    conf.setdefault("request.timeout.ms", min(30_000, delivery_timeout_ms))
    return conf


def shared_producer(conf: dict[str, Any]) -> Producer:
    """The process-wide producer, created on first call. Later calls reuse it (the config is fixed per process)."""
    global _producer
    if _producer is None:
        with _lock:
            if _producer is None:
                _producer = Producer(conf)
    return _producer


def reset_shared_producer(timeout_s: float = 10.0) -> None:
    """Flush and drop the process-wide producer (tests and the local host use this between runs)."""
    global _producer
    with _lock:
        if _producer is not None:
            _producer.flush(timeout_s)
        _producer = None


class DeliveryTracker:
    """Counts one batch's acknowledgements on a shared producer."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._pending = 0
        self._errors: list[str] = []
        self._lock = threading.Lock()

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            self._pending -= 1
            if err is not None:
                self._errors.append(f"{err.name()}: {err.str()}")

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        deadline: float | None = None,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers or []), on_delivery=self._on_delivery
                )
                break
            except BufferError:
                # Local queue full: serve callbacks to make room, but never wait past the batch deadline.
                if deadline is not None and time.monotonic() > deadline:
                    raise DeliveryError("producer queue stayed full until the delivery deadline") from None
                self._producer.poll(0.05)
        with self._lock:
            self._pending += 1
        self._producer.poll(0)

    def wait(self, deadline: float) -> int:
        """Block until every record is acknowledged; raise `DeliveryError` on any failure or at the deadline."""
        while True:
            with self._lock:
                pending, errors = self._pending, list(self._errors)
            if errors:
                raise DeliveryError(f"{len(errors)} record(s) not delivered; first error: {errors[0]}")
            if pending == 0:
                return 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeliveryError(f"{pending} record(s) not acknowledged before the delivery deadline")
            self._producer.flush(min(remaining, 0.5))
