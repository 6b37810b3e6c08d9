"""The Kafka-triggered function against the real broker and registry: records consumed off a real topic,
turned into real `func.KafkaEvent` batches, the function called, outputs consumed back and decoded."""

from __future__ import annotations

import io
import logging
import os
import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import function_app
from settlement.core import deadletter
from settlement.core.errors import DeliveryError, TransientError
from settlement.runtime.triggers import from_kafka_event
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.schemas.user_trade_pb2 import UserTrade
from tests.integration.pipeline import SECRET, Pipeline, as_events, decode_settlements
from tests.kafka_helpers import drain, produce, unique_name

pytestmark = pytest.mark.integration


GOOD = [
    (
        "User_1",
        UserTrade(regionid="Region_1", quantity=100, symbol="ZVV", price=50, account="A1", side="BUY"),
        ("Completed", "Within same day limit", 5000.0),
    ),
    (
        "User_2",
        UserTrade(regionid="Region_2", quantity=1000, symbol="ZBZX", price=101, account="A2", side="SELL"),
        ("Pending", "Large trade", 101000.0),
    ),
    (
        "User_3",
        UserTrade(regionid="Region_3", quantity=1000, symbol="ZBZX", price=100, account="A3", side="BUY"),
        ("Completed", "Within same day limit", 100000.0),
    ),
    (
        None,
        UserTrade(regionid="Region_4", quantity=10, symbol="ZVV", price=10, account="A4", side="BUY"),
        ("Rejected", "No user account specified", 100.0),
    ),
    (
        "User_5",
        UserTrade(quantity=10, symbol="ZVV", price=20, account="A5", side="SELL"),
        ("Rejected", "No user account specified", 200.0),
    ),
    (
        "User_6",
        UserTrade(regionid="Region_6", quantity=3, symbol="ZWATCH", price=7, account="A6", side="BUY"),
        ("SEC Flagged", "SEC inspection: watch-listed symbol", 21.0),
    ),
    (
        "User_7",
        UserTrade(regionid="Region_7", quantity=0, symbol="ZVV", price=5, account="A7", side="BUY"),
        ("Rejected", "Quantity must be positive", 0.0),
    ),
]


def test_a_batch_settles_into_exact_settlements(pipeline: Pipeline, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ser, ctx = pipeline.serializer()
    produce(pipeline.bootstrap, pipeline.source, [(k, ser(t, ctx)) for k, t, _ in GOOD], partition=1)
    consumed = drain(pipeline.bootstrap, pipeline.source, len(GOOD))
    assert len(consumed) == len(GOOD)

    function_app.settle_user_trades(as_events(consumed))

    out = drain(pipeline.bootstrap, pipeline.settlements, len(GOOD))
    assert drain(pipeline.bootstrap, pipeline.dlq, 0, timeout_s=1) == []
    got = decode_settlements(pipeline, out)
    expected = [
        TradeSettlement(
            user=k or "",
            symbol=t.symbol,
            amount=amount,
            disposition=disp,
            reason=reason,
            timestamp=m.timestamp()[1],
            source_topic=pipeline.source,
            source_partition=1,
            source_offset=m.offset(),
        )
        for (k, t, (disp, reason, amount)), m in zip(GOOD, consumed, strict=True)
    ]
    assert got == expected
    # Byte for byte what a fresh message serialises to, though one message is refilled per record (fields
    # going back to their defaults: no user, a zero amount).
    assert [m.value()[6:] for m in out] == [e.SerializeToString() for e in expected]
    assert [m.key() for m in out] == [m.key() for m in consumed]
    assert all(s.timestamp > 1_700_000_000_000 for s in got)  # epoch milliseconds, not .NET ticks
    assert SECRET not in caplog.text


def test_replay_writes_nothing_more_and_a_fresh_ledger_writes_identical_bytes(pipeline: Pipeline, monkeypatch) -> None:
    monkeypatch.setenv("SETTLEMENT_DELIVERY_GUARANTEE", "exactly-once")
    ser, ctx = pipeline.serializer()
    produce(pipeline.bootstrap, pipeline.source, [(k, ser(t, ctx)) for k, t, _ in GOOD])
    consumed = drain(pipeline.bootstrap, pipeline.source, len(GOOD))
    function_app.settle_user_trades(as_events(consumed))
    function_app.root.reset()
    function_app.settle_user_trades(as_events(consumed))  # a fresh process, same ledger: all settled already
    assert len(drain(pipeline.bootstrap, pipeline.settlements, len(GOOD) + 1, timeout_s=3)) == len(GOOD)
    function_app.root.reset()
    monkeypatch.setenv("KAFKA_CONSUMER_GROUP", unique_name("replay"))  # a new ledger replays the topic whole
    function_app.settle_user_trades(as_events(consumed))
    out = drain(pipeline.bootstrap, pipeline.settlements, 2 * len(GOOD))
    values = [m.value() for m in out]
    assert len(values) == 2 * len(GOOD)
    by_source = {}
    for s, v in zip(decode_settlements(pipeline, out), values, strict=True):
        by_source.setdefault((s.source_partition, s.source_offset), set()).add(v)
    assert len(by_source) == len(GOOD) and all(len(v) == 1 for v in by_source.values())


def _framed(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + b"\x00" + payload


def test_poison_records_are_dead_lettered_and_good_ones_still_settle(pipeline: Pipeline) -> None:
    ser, ctx = pipeline.serializer()
    good = [ser(t, ctx) for _, t, _ in GOOD[:3]]
    schema_id = int.from_bytes(good[0][1:5], "big")
    # A settlement-typed record on the trades topic: framed correctly, but another message type.
    other = ProtobufSerializer(
        TradeSettlement, SchemaRegistryClient({"url": pipeline.registry_url}), {"use.deprecated.format": False}
    )
    wrong_type = other(
        TradeSettlement(user="x", symbol="y", amount=1.0),
        SerializationContext(unique_name("other"), MessageField.VALUE),
    )
    poison = {
        "empty-value": b"",
        "bad-magic-byte": b'{"SYMBOL": "ZVV", "QUANTITY": 10}',
        "truncated-header": b"\x00\x00\x00",
        "unknown-schema-id": _framed(987_654_321, good[0][6:]),
        "undecodable-payload": _framed(schema_id, b"\xff\xff\xff\xff\xff"),
        "oversize": _framed(schema_id, good[0][6:] + b"\x00" * 600),
        "wrong-schema-type": wrong_type,
        "bad-key": good[1],
    }
    records: list[tuple[bytes | None, bytes | None]] = [(b"User_1", good[0])]
    records += [(b"\xff\xfe" if kind == "bad-key" else b"User_9", value) for kind, value in poison.items()]
    records += [(b"User_2", good[1]), (b"User_3", good[2])]
    produce(pipeline.bootstrap, pipeline.source, records, partition=0)
    consumed = drain(pipeline.bootstrap, pipeline.source, len(records))
    # The host hands a non-UTF-8 key over as text with U+FFFD in place of the bad bytes.
    result = function_app.root.services().processor.process([from_kafka_event(e) for e in as_events(consumed)])

    settled = drain(pipeline.bootstrap, pipeline.settlements, 3)
    dead = drain(pipeline.bootstrap, pipeline.dlq, len(poison))
    assert (result.settled, result.dead_lettered) == (3, len(poison))
    assert len(settled) + len(dead) == len(records)  # the invariant: one output per input, none lost
    assert [s.source_offset for s in decode_settlements(pipeline, settled)] == [
        consumed[0].offset(),
        consumed[-2].offset(),
        consumed[-1].offset(),
    ]
    for msg, (kind, value) in zip(dead, poison.items(), strict=True):
        headers = dict(msg.headers() or [])
        assert headers[deadletter.REASON].decode() == kind
        assert headers[deadletter.SOURCE_TOPIC].decode() == pipeline.source
        assert headers[deadletter.SOURCE_PARTITION] == b"0"
        assert int(headers[deadletter.SOURCE_OFFSET]) == consumed[1 + list(poison).index(kind)].offset()
        assert headers[deadletter.DETAIL] and headers[deadletter.FAILED_AT]
        assert (msg.value() or b"") == value  # original bytes, untouched
        assert msg.key() == ("\ufffd\ufffd".encode() if kind == "bad-key" else b"User_9")


def test_a_missing_output_topic_fails_the_batch_within_its_deadline(pipeline: Pipeline, monkeypatch) -> None:
    monkeypatch.setenv("SETTLEMENTS_TOPIC", unique_name("missing"))  # auto-create is off on the broker
    monkeypatch.setenv("SETTLEMENT_DELIVERY_TIMEOUT_SECONDS", "3")
    function_app.root.reset()
    ser, ctx = pipeline.serializer()
    produce(pipeline.bootstrap, pipeline.source, [(k, ser(t, ctx)) for k, t, _ in GOOD[:2]])
    events = as_events(drain(pipeline.bootstrap, pipeline.source, 2))

    started = time.monotonic()
    with pytest.raises(DeliveryError):
        function_app.settle_user_trades(events)
    elapsed = time.monotonic() - started
    assert elapsed < 3 + 2.0, elapsed
    function_app.root.reset(producer_timeout_s=0)


def test_an_unreachable_registry_fails_the_batch_and_produces_nothing(pipeline: Pipeline, monkeypatch) -> None:
    ser, ctx = pipeline.serializer()
    produce(pipeline.bootstrap, pipeline.source, [(k, ser(t, ctx)) for k, t, _ in GOOD[:2]])
    events = as_events(drain(pipeline.bootstrap, pipeline.source, 2))
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://127.0.0.1:9/apis/ccompat/v7")  # nothing listens on port 9
    function_app.root.reset()

    with pytest.raises(TransientError, match="Schema Registry unreachable"):
        function_app.settle_user_trades(events)
    assert drain(pipeline.bootstrap, pipeline.settlements, 0, timeout_s=1) == []
    assert drain(pipeline.bootstrap, pipeline.dlq, 0, timeout_s=1) == []


def test_the_producer_is_static_across_invocations(pipeline: Pipeline) -> None:
    ser, ctx = pipeline.serializer()
    produce(pipeline.bootstrap, pipeline.source, [(k, ser(t, ctx)) for k, t, _ in GOOD[:2]])
    events = as_events(drain(pipeline.bootstrap, pipeline.source, 2))
    function_app.settle_user_trades(events[:1])
    shared = function_app.root.services().producer
    first = shared.current()
    function_app.settle_user_trades(events[1:])
    assert first is not None and shared.current() is first
    assert len(drain(pipeline.bootstrap, pipeline.settlements, 2)) == 2


def test_config_error_names_the_setting_on_first_invocation(pipeline: Pipeline, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("KAFKA_PRODUCER_CONFIG", '{"acks": "1", "sasl.password": "' + SECRET + '"}')
    function_app.root.reset()
    from settlement.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        function_app.settle_user_trades([])
    assert str(err.value).startswith("KAFKA_PRODUCER_CONFIG: producer setting acks=**** is not allowed")
    logging.getLogger("settlement").error("invocation failed", exc_info=err.value)
    assert SECRET not in caplog.text and SECRET not in str(err.value)
    buf = io.StringIO()
    import traceback

    traceback.print_exception(err.value, file=buf)
    assert SECRET not in buf.getvalue()
    assert os.environ["KAFKA_PRODUCER_CONFIG"].count(SECRET) == 1  # the scan really had a secret to find


def test_an_unexpected_error_on_one_record_dead_letters_it_and_settles_the_rest(pipeline: Pipeline) -> None:
    ser, ctx = pipeline.serializer()
    produce(pipeline.bootstrap, pipeline.source, [(k, ser(t, ctx)) for k, t, _ in GOOD[:3]], partition=0)
    consumed = drain(pipeline.bootstrap, pipeline.source, 3)
    records = [from_kafka_event(e) for e in as_events(consumed)]
    proc = function_app.root.services().processor
    target = consumed[1].value()

    def decode(value: bytes | None) -> UserTrade:
        if value == target:
            raise ZeroDivisionError("a bug that only this record triggers")
        return proc.decoder.decode(value)

    result = proc.process(records, decode=decode)
    assert [r.outcome for r in result.results] == ["settled", "dead-lettered", "settled"]
    (dead,) = drain(pipeline.bootstrap, pipeline.dlq, 1)
    headers = dict(dead.headers())
    assert headers[deadletter.REASON] == b"unsettleable"
    assert headers[deadletter.DETAIL] == b"ZeroDivisionError: a bug that only this record triggers"
    assert dead.value() == target
    assert len(drain(pipeline.bootstrap, pipeline.settlements, 2)) == 2


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_settlement_carries_its_trades_time_as_its_record_timestamp(
    pipeline: Pipeline, monkeypatch, guarantee: str
) -> None:
    # The analysis takes event time from the record timestamp (Flink's `$rowtime`, ksqlDB's ROWTIME): a settlement
    # stamped with the time it was written would land in the window of its settling, not of its trade. Trades an
    # hour old, a millisecond apart; one with a trace context (the settlement then goes out on its own, with
    # headers) and one poison record, whose dead letter keeps the producer's clock (retention counts from the
    # failure) and names the trade's time in a header.
    monkeypatch.setenv("SETTLEMENT_DELIVERY_GUARANTEE", guarantee)
    function_app.root.reset()
    ser, ctx = pipeline.serializer()
    base = int(time.time() * 1000) - 3_600_000
    traced = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    sender = Producer({"bootstrap.servers": pipeline.bootstrap})
    for i, (key, trade, _) in enumerate(GOOD):
        headers = [("traceparent", traced)] if i == 2 else None
        sender.produce(pipeline.source, ser(trade, ctx), key, partition=0, timestamp=base + i, headers=headers)
    sender.produce(pipeline.source, b"not protobuf", b"User_9", partition=0, timestamp=base + 99)
    assert sender.flush(10) == 0
    consumed = drain(pipeline.bootstrap, pipeline.source, len(GOOD) + 1)
    started = int(time.time() * 1000)

    function_app.settle_user_trades(as_events(consumed))

    out = drain(pipeline.bootstrap, pipeline.settlements, len(GOOD))
    settled = zip(out, decode_settlements(pipeline, out), strict=True)
    stamps = {s.source_offset: (m.timestamp(), s.timestamp) for m, s in settled}
    assert stamps == {m.offset(): ((TIMESTAMP_CREATE_TIME, base + i), base + i) for i, m in enumerate(consumed[:-1])}
    assert [dict(m.headers() or []).get("traceparent") for m in out].count(traced) == 1  # one went with headers
    (dead,) = drain(pipeline.bootstrap, pipeline.dlq, 1)
    assert dead.timestamp()[1] >= started
    assert dict(dead.headers() or [])[deadletter.SOURCE_TIMESTAMP] == str(base + 99).encode()
