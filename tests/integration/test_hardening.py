"""Size, broker refusals and producer failures never fail a batch they should settle, never lose a record,
never duplicate one: against the real broker."""

from __future__ import annotations

import hashlib
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import function_app
from settlement.core import deadletter
from settlement.core.deadline import Deadline
from settlement.core.errors import DeliveryError
from settlement.delivery.producer import DeliveryTracker
from tests.integration.pipeline import Pipeline, as_events
from tests.integration.test_registry import TRADE
from tests.kafka_helpers import drain, unique_name

pytestmark = pytest.mark.integration


def _topic(bootstrap: str, name: str, **config: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, 1, 1, config=config)]).values():
        future.result(timeout=30)
    return name


def _produce_big(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4_000_000, "linger.ms": 5})
    for key, value in records:
        p.produce(topic, key=key, value=value)
    assert p.flush(30) == 0


def _good(pipeline: Pipeline) -> bytes:
    ser, ctx = pipeline.serializer()
    return ser(TRADE, ctx)


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_records_of_a_megabyte_and_more_are_dead_lettered_shrunk_and_the_batch_settles(
    pipeline: Pipeline, monkeypatch, guarantee: str
) -> None:
    source = _topic(pipeline.bootstrap, unique_name("big-in"), **{"max.message.bytes": "4000000"})
    monkeypatch.setenv("USER_TRADES_TOPIC", source)
    monkeypatch.setenv("SETTLEMENT_DELIVERY_GUARANTEE", guarantee)
    good = _good(pipeline)
    huge_value = good[:6] + b"\x01" * 1_500_000
    huge_key = b"U" * 1_000_000
    _produce_big(
        pipeline.bootstrap, source, [(b"User_1", good), (b"User_2", huge_value), (huge_key, good), (b"User_3", good)]
    )
    consumed = drain(pipeline.bootstrap, source, 4)
    function_app.settle_user_trades(as_events(consumed))
    function_app.settle_user_trades(as_events(consumed))  # a replay: the same again, or (exactly-once) nothing

    runs = 2 if guarantee == "at-least-once" else 1
    settled = drain(pipeline.bootstrap, pipeline.settlements, 2 * runs)
    dead = drain(pipeline.bootstrap, pipeline.dlq, 2 * runs)
    assert len(settled) == 2 * runs and len(dead) == 2 * runs  # 2 settled + 2 dead-lettered a run, none lost
    by_offset = {}
    for m in dead[:2]:
        h = dict(m.headers() or [])
        by_offset[int(h[deadletter.SOURCE_OFFSET])] = (m, h)
    value_dead, vh = by_offset[consumed[1].offset()]
    assert vh[deadletter.REASON] == b"oversize"
    assert vh[deadletter.ORIGINAL_VALUE_BYTES] == str(len(huge_value)).encode()
    assert vh[deadletter.ORIGINAL_VALUE_SHA256] == hashlib.sha256(huge_value).hexdigest().encode()
    assert value_dead.value() == huge_value[: deadletter.PREFIX_BYTES]
    key_dead, kh = by_offset[consumed[2].offset()]
    assert kh[deadletter.REASON] == b"oversize" and kh[deadletter.ORIGINAL_KEY_BYTES] == b"1000000"
    assert key_dead.key() == huge_key[: deadletter.PREFIX_BYTES]


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_records_the_broker_refuses_as_too_large_become_dead_letters(
    pipeline: Pipeline, monkeypatch, guarantee: str
) -> None:
    # Smaller than any settlement batch, larger than a transaction marker (a 61-byte batch header + a 17-byte
    # control record): below 78 bytes the coordinator can never write the abort marker, the transaction stays
    # in PrepareAbort and every later transaction of the partition waits on it (CONCURRENT_TRANSACTIONS).
    tiny = _topic(pipeline.bootstrap, unique_name("tiny-out"), **{"max.message.bytes": "100"})
    monkeypatch.setenv("SETTLEMENTS_TOPIC", tiny)
    monkeypatch.setenv("SETTLEMENT_DELIVERY_GUARANTEE", guarantee)
    function_app.root.reset()
    good = _good(pipeline)
    _produce_big(pipeline.bootstrap, pipeline.source, [(b"User_1", good), (b"User_2", good)])
    function_app.settle_user_trades(as_events(drain(pipeline.bootstrap, pipeline.source, 2)))
    assert drain(pipeline.bootstrap, tiny, 0, timeout_s=1) == []
    dead = drain(pipeline.bootstrap, pipeline.dlq, 2)
    assert [dict(m.headers() or [])[deadletter.REASON] for m in dead] == [b"oversize", b"oversize"]
    assert all(b"refused it as too large" in dict(m.headers() or [])[deadletter.DETAIL] for m in dead)


class _FatalOnce:
    """The real producer, whose next produce fails as librdkafka does after a fatal (idempotence) error."""

    def __init__(self, real: Producer) -> None:
        self.real = real
        self.fired = False

    def _fire(self) -> None:
        if not self.fired:
            self.fired = True
            raise KafkaException(KafkaError(KafkaError._FATAL, "injected fatal error", fatal=True))

    def produce(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._fire()
        return self.real.produce(*args, **kwargs)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.real, name)


def test_a_fatal_producer_error_fails_the_batch_and_the_next_gets_a_new_producer(pipeline: Pipeline) -> None:
    # The at-least-once path's shared producer (the fixture's guarantee); the exactly-once ledger's producers
    # are per partition, and a fatal error there drops the partition's producer (tests/integration/
    # test_exactly_once.py).
    good = _good(pipeline)
    _produce_big(pipeline.bootstrap, pipeline.source, [(b"User_1", good)])
    events = as_events(drain(pipeline.bootstrap, pipeline.source, 1))
    function_app.settle_user_trades(events)
    shared = function_app.root.services().producer
    first = shared.current()
    assert first is not None
    shared._producer = _FatalOnce(first)  # type: ignore[assignment]
    with pytest.raises(DeliveryError, match="injected fatal error"):
        function_app.settle_user_trades(events)
    function_app.settle_user_trades(events)
    assert shared.current() is not first and not isinstance(shared.current(), _FatalOnce)
    assert len(drain(pipeline.bootstrap, pipeline.settlements, 2)) == 2
    first.flush(5)


def test_a_batch_waits_for_its_own_acknowledgements_only(pipeline: Pipeline) -> None:
    shared = Producer(
        {
            "bootstrap.servers": pipeline.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "delivery.timeout.ms": 8000,
        }
    )
    stuck = DeliveryTracker(shared)
    stuck.produce(unique_name("no-such-topic"), b"k", b"v", deadline=Deadline.after(10))
    ours = DeliveryTracker(shared)
    ours.produce(pipeline.settlements, b"k", b"v", deadline=Deadline.after(10))
    started = time.monotonic()
    assert ours.wait(Deadline.after(10)) == []
    assert time.monotonic() - started < 3.0  # not held back by the other batch's undeliverable record
    with pytest.raises(DeliveryError):
        stuck.wait(Deadline.after(10))
    shared.flush(1)
