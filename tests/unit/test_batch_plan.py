"""The batch planner and the at-least-once delivery step with a fake delivery tracker; registry `mock://`.

Each input ends as exactly one output, a settlement or a dead letter with its reason: what the broker tests
show end to end, here without I/O, including the broker refusing a settlement as too large.
"""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from localrun.experiments import ksql_schema
from settlement.core import deadletter
from settlement.core.records import InputRecord
from settlement.core.rules import RulesConfig
from settlement.core.topics import Topics
from settlement.delivery.at_least_once import AtLeastOnce
from settlement.delivery.batch import SettlementProcessor
from settlement.delivery.planner import Planner
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.schemas.user_trade_pb2 import UserTrade
from settlement.serde.decoder import TradeDecoder
from settlement.serde.encoder import SettlementEncoder

TOPICS = Topics("settlements", "dlq")


class FakeTracker:
    """Records what the batch hands over; `refuse_first` indexes are refused by the "broker" once."""

    def __init__(self, refuse_first: tuple[int, ...] = ()) -> None:
        self.out: dict[int, tuple[str, bytes | None, bytes | None, dict[str, bytes]]] = {}
        self._refuse = list(refuse_first)

    def produce(
        self, topic: str, key: Any, value: Any, headers: Any, deadline: float, index: int = -1, **_: Any
    ) -> None:
        self.out[index] = (topic, key, value, dict(headers or []))

    def produce_plain(
        self, topic: str, indexes: list[int], messages: list[tuple[Any, Any, int]], *_: Any, **__: Any
    ) -> list[int]:
        for i, (key, value, _stamp) in zip(indexes, messages, strict=True):
            self.out[i] = (topic, key, value, {})
        return []

    def wait(self, deadline: float) -> list[int]:
        refused, self._refuse = self._refuse, []
        return refused


def processor(tracker: FakeTracker) -> tuple[SettlementProcessor, int]:
    client = SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})
    schema_id = ksql_schema.register(client, "ut-value")
    planner = Planner(
        SettlementEncoder(client, TOPICS.settlements, auto_register=True),
        RulesConfig(sec_sample_rate=0.0),
        TOPICS,
        max_record_bytes=200,
        max_message_bytes=1_000_000,
        clock=lambda: 1_800_000_000.0,
    )
    delivery = AtLeastOnce(lambda: tracker, TOPICS, planner)  # type: ignore[arg-type,return-value]
    proc = SettlementProcessor(TradeDecoder(client), planner, delivery, delivery_timeout_s=5.0)
    return proc, schema_id


def rec(offset: int, key: bytes | None, value: bytes | None, timestamp: int | None = 1000) -> InputRecord:
    return InputRecord(key, value, "ut", 0, offset, timestamp, (("traceparent", b"x"),) if offset == 4 else ())


def test_every_input_ends_as_one_settlement_or_one_dead_letter_with_its_reason() -> None:
    tracker = FakeTracker()
    proc, schema_id = processor(tracker)
    good = ksql_schema.encode(schema_id, UserTrade(regionid="R", quantity=3, symbol="ZVV", price=50))
    records = [
        rec(0, b"User_1", good),
        rec(1, b"\xff\xfe", good),  # a key the host could not deliver as text
        rec(2, b"User_2", good, timestamp=None),
        rec(3, b"User_3", b"\x00" + b"z" * 300),  # over max_record_bytes
        rec(4, b"User_4", b"not protobuf"),  # carries its own headers onto its dead letter
        rec(5, None, good),  # no user: settled as Rejected
    ]
    result = proc.process(records)
    assert [r.outcome for r in result.results] == ["settled"] + ["dead-lettered"] * 4 + ["settled"]
    assert sorted(tracker.out) == list(range(6))
    topics = {i: o[0] for i, o in tracker.out.items()}
    assert topics == {0: "settlements", 1: "dlq", 2: "dlq", 3: "dlq", 4: "dlq", 5: "settlements"}
    reasons = {i: o[3][deadletter.REASON] for i, o in tracker.out.items() if o[0] == "dlq"}
    assert reasons == {1: b"bad-key", 2: b"no-timestamp", 3: b"oversize", 4: b"bad-magic-byte"}
    assert tracker.out[4][3]["traceparent"] == b"x" and tracker.out[4][2] == b"not protobuf"
    first = TradeSettlement.FromString((tracker.out[0][2] or b"")[6:])
    assert (first.user, first.symbol, first.amount, first.disposition, first.source_offset) == (
        "User_1",
        "ZVV",
        150.0,
        "Completed",
        0,
    )
    assert TradeSettlement.FromString((tracker.out[5][2] or b"")[6:]).disposition == "Rejected"


def test_a_settlement_the_broker_refuses_as_too_large_becomes_its_shrunk_dead_letter() -> None:
    tracker = FakeTracker(refuse_first=(0,))
    proc, schema_id = processor(tracker)
    good = ksql_schema.encode(schema_id, UserTrade(regionid="R", quantity=3, symbol="ZVV", price=50))
    result = proc.process([rec(0, b"User_1", good), rec(1, b"User_2", good)])
    assert [r.outcome for r in result.results] == ["dead-lettered", "settled"]
    topic, _, value, headers = tracker.out[0]
    assert (topic, headers[deadletter.REASON]) == ("dlq", b"oversize")
    assert b"refused it as too large" in headers[deadletter.DETAIL]
    # a short value is kept whole even in a shrunk dead letter; only what exceeds the prefix is cut
    assert value == good and deadletter.ORIGINAL_VALUE_BYTES not in headers


def test_a_dead_letter_over_the_limit_keeps_a_prefix_and_the_originals_size_and_digest() -> None:
    import hashlib

    from settlement.core.errors import PoisonRecord
    from settlement.core.poison import PoisonKind

    big = bytes(range(256)) * 20
    record = InputRecord(b"K" * 3000, big, "ut", 1, 9, 77, (("h", b"v"),))
    poison = PoisonRecord(PoisonKind.OVERSIZE, "too big")
    key, value, headers = deadletter.dead_letter(record, poison, 1_800_000_000.0, max_bytes=2000)
    h = dict(headers)
    assert value == big[: deadletter.PREFIX_BYTES] and key == b"K" * deadletter.PREFIX_BYTES
    assert h[deadletter.ORIGINAL_VALUE_BYTES] == b"5120"
    assert h[deadletter.ORIGINAL_VALUE_SHA256] == hashlib.sha256(big).hexdigest().encode()
    assert h[deadletter.ORIGINAL_KEY_BYTES] == b"3000" and h["h"] == b"v"
    assert (h[deadletter.REASON], h[deadletter.SOURCE_OFFSET], h[deadletter.SOURCE_TIMESTAMP]) == (
        b"oversize",
        b"9",
        b"77",
    )
    whole = deadletter.dead_letter(record._replace(key=b"k", value=b"v"), poison, 0.0, max_bytes=2000)
    assert whole[:2] == (b"k", b"v")
