"""The per-test pipeline: unique topics, app settings pointing at them, a fresh service and producer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import azure.functions as func
from confluent_kafka import Message
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import function_app
from localrun.experiments.generator import value_encoder
from localrun.platform.indexing import kafka_annotation
from localrun.platform.invocation import messages_to_events
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.schemas.user_trade_pb2 import UserTrade
from tests.kafka_helpers import create_topics, unique_name

SECRET = "sr-secret-Hq2Jd8Lw0Pz5Vn3Rt6Yc"


@dataclass
class Pipeline:
    bootstrap: str
    registry_url: str
    source: str
    settlements: str
    dlq: str

    def serializer(self) -> tuple[Callable[[UserTrade, SerializationContext], bytes], SerializationContext]:
        """Values framed as ksqlDB writes them, the schema registered as ksqlDB registers it (text)."""
        encode = value_encoder(self.registry_url, self.source, "ksqldb")
        return (lambda trade, _ctx: encode(trade)), SerializationContext(self.source, MessageField.VALUE)

    def descriptor_serializer(self) -> tuple[ProtobufSerializer, SerializationContext]:
        """confluent-kafka's serializer: the schema registered as a base64 descriptor."""
        client = SchemaRegistryClient({"url": self.registry_url})
        return (
            ProtobufSerializer(UserTrade, client, {"use.deprecated.format": False}),
            SerializationContext(self.source, MessageField.VALUE),
        )


def _pipeline(stack, monkeypatch) -> Iterator[Pipeline]:
    p = Pipeline(
        stack.bootstrap, stack.registry_url, unique_name("user_trades"), unique_name("settlements"), unique_name("dlq")
    )
    create_topics(stack.bootstrap, [p.source], partitions=3)
    create_topics(stack.bootstrap, [p.settlements, p.dlq])
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "SCHEMA_REGISTRY_URL": stack.registry_url,
        "SCHEMA_REGISTRY_CONFIG": '{"basic.auth.user.info": "svc:' + SECRET + '"}',
        "USER_TRADES_TOPIC": p.source,
        "KAFKA_CONSUMER_GROUP": unique_name("settle"),
        # The producer-path tests (oversize, fatal errors, redrive) were written against at-least-once; the
        # exactly-once tests set their guarantee themselves.
        "SETTLEMENT_DELIVERY_GUARANTEE": "at-least-once",
        "SETTLEMENTS_TOPIC": p.settlements,
        "DEAD_LETTER_TOPIC": p.dlq,
        "SETTLEMENT_SEC_SAMPLE_RATE": "0",
        "SETTLEMENT_SEC_WATCHLIST": "ZWATCH",
        "SETTLEMENT_MAX_RECORD_BYTES": "512",
        "SETTLEMENT_DELIVERY_TIMEOUT_SECONDS": "20",
    }.items():
        monkeypatch.setenv(name, value)
    function_app.root.reset()
    yield p
    function_app.root.reset()


def as_events(messages: list[Message]) -> list[func.KafkaEvent]:
    """What the host + worker hand a cardinality=MANY, dataType=binary Python function: host-shaped data
    converted by the library, checked against the function's own annotation."""
    import function_app

    return messages_to_events(messages, kafka_annotation(function_app.app))


def decode_settlements(p: Pipeline, messages: list[Message]) -> list[TradeSettlement]:
    """Settlements through confluent-kafka's deserializer, after checking each names the registered settlement
    schema. (The deserializer is given no registry client: for a schema registered as text, Apicurio answers
    `format=serialized` with the text, which confluent-kafka reads only as base64; Confluent's registry
    converts. Our own decoder reads both, see tests/integration/test_registry.py.)"""
    client = SchemaRegistryClient({"url": p.registry_url})
    for m in messages:
        schema = client.get_schema(int.from_bytes((m.value() or b"")[1:5], "big"))
        assert "TradeSettlement" in (schema.schema_str or ""), schema.schema_str
    deserializer = ProtobufDeserializer(TradeSettlement, {"use.deprecated.format": False})
    ctx = SerializationContext(p.settlements, MessageField.VALUE)
    return [deserializer(m.value(), ctx) for m in messages]
