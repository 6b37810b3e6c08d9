"""Produce `user_trades` the way the ksqlDB LEFT JOIN does: a UTF-8 USERID key (null for a trade with no
user) and a Confluent-framed Protobuf `UserTrade` value whose schema is registered as ksqlDB registers it
(`.proto` text, see localrun/experiments/ksql_schema.py); `schema_form="descriptor"` registers it through
confluent-kafka's serializer instead (a base64 descriptor), the other form a registry may return.

Deterministic for a given seed, so a run can be repeated and its summary compared.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from localrun.experiments import ksql_schema
from settlement.schemas import UserTrade

SYMBOLS = ("ZVV", "ZBZX", "ZJZZT", "ZTEST", "ZXZZT", "ZWZZT", "ZVZZT")
SIDES = ("BUY", "SELL")


@dataclass(frozen=True)
class GeneratorConfig:
    no_user_share: float = 0.05
    large_share: float = 0.10
    users: int = 9
    seed: int = 7


def trades(count: int, cfg: GeneratorConfig) -> Iterator[tuple[str | None, UserTrade]]:
    """(key, value) pairs shaped like the Datagen stock-trades quickstart joined with users."""
    rng = random.Random(cfg.seed)
    for _ in range(count):
        no_user = rng.random() < cfg.no_user_share
        large = rng.random() < cfg.large_share
        quantity = rng.randint(1000, 4999) if large else rng.randint(1, 999)
        price = rng.randint(101, 999) if large else rng.randint(5, 99)
        trade = UserTrade(
            quantity=quantity,
            symbol=rng.choice(SYMBOLS),
            price=price,
            account=f"ABC{rng.randint(100, 999)}",
            side=rng.choice(SIDES),
        )
        user = f"User_{rng.randint(1, cfg.users)}"
        if no_user:
            # The join found no users row: the key is still the trade's USERID, the user columns are null.
            yield user, trade
        else:
            trade.regionid = f"Region_{rng.randint(1, 9)}"
            yield user, trade


def value_serializer(registry_url: str, topic: str) -> tuple[ProtobufSerializer, SerializationContext]:
    client = SchemaRegistryClient({"url": registry_url})
    return ProtobufSerializer(UserTrade, client, {"use.deprecated.format": False}), SerializationContext(
        topic, MessageField.VALUE
    )


def value_encoder(
    registry_url: str, topic: str, schema_form: str = "ksqldb", registry_conf: dict[str, Any] | None = None
) -> Callable[[UserTrade], bytes]:
    """Trade → framed value bytes, with the schema registered in the given form (`ksqldb` or `descriptor`);
    `registry_conf` adds client settings (a bearer token source for a registry that requires one)."""
    if schema_form == "descriptor":
        serializer, ctx = value_serializer(registry_url, topic)
        return lambda trade: serializer(trade, ctx)  # type: ignore[return-value]
    if schema_form != "ksqldb":
        raise ValueError(f"unknown schema form {schema_form!r}")
    schema_id = ksql_schema.register(
        SchemaRegistryClient({"url": registry_url, **(registry_conf or {})}), f"{topic}-value"
    )
    return lambda trade: ksql_schema.encode(schema_id, trade)


def produce_trades(
    bootstrap: str,
    registry_url: str,
    topic: str,
    count: int,
    cfg: GeneratorConfig = GeneratorConfig(),
    rate: float | None = None,
    schema_form: str = "ksqldb",
    registry_conf: dict[str, Any] | None = None,
) -> int:
    """Produce `count` trades, at `rate` records/s or as fast as possible; returns the number acknowledged."""
    encode = value_encoder(registry_url, topic, schema_form, registry_conf)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True, "compression.type": "lz4"}
    )
    acked = 0

    def on_delivery(err, _msg):  # type: ignore[no-untyped-def]
        nonlocal acked
        if err is None:
            acked += 1

    started = time.monotonic()
    for i, (key, trade) in enumerate(trades(count, cfg)):
        if rate:
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                producer.produce(topic, key=key, value=encode(trade), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    return acked
