"""Writer schemas evolved as ksqlDB evolves them, through the real registry in both forms it returns.

ksqlDB numbers a PROTOBUF value's fields by SELECT position; an edited SELECT list registers a schema whose
numbers mean other columns. Each case registers that schema, as `.proto` text (ksqlDB's form) or as the base64
descriptor confluent-kafka's serializer registers, writes trades with the writer's own message class, runs
them through the function, and reads back what was booked.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import function_app
from localrun.experiments import ksql_schema
from settlement.core import deadletter
from settlement.serde.framing import frame_header
from tests.integration.pipeline import Pipeline, as_events, decode_settlements
from tests.kafka_helpers import drain, produce, unique_name

pytestmark = pytest.mark.integration

OURS = dict(ksql_schema.COLUMNS)
TRADE = {"REGIONID": "Region_1", "QUANTITY": 100, "SYMBOL": "ZVV", "PRICE": 50, "ACCOUNT": "ACC-7", "SIDE": "BUY"}


def cols(*names: str, **types: str) -> tuple[tuple[str, str], ...]:
    return tuple((n, types.get(n, OURS.get(n.upper(), "string"))) for n in names)


def encoder(pipeline: Pipeline, columns: tuple[tuple[str, str], ...], form: str) -> Any:
    """Values written by a producer holding this schema, registered in `form` ("text" or "descriptor")."""
    text = ksql_schema.schema_text(columns=columns)
    cls = ksql_schema.writer_class(text)
    client = SchemaRegistryClient({"url": pipeline.registry_url})
    if form == "text":
        schema_id = ksql_schema.register(client, unique_name("evolved") + "-value", text)
        return lambda **v: frame_header(schema_id) + cls(**v).SerializeToString()
    serializer = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
    ctx = SerializationContext(unique_name("evolved"), MessageField.VALUE)
    return lambda **v: serializer(cls(**v), ctx)


def settle(pipeline: Pipeline, values: list[bytes]) -> None:
    produce(pipeline.bootstrap, pipeline.source, [(b"User_1", v) for v in values], partition=0)
    function_app.settle_user_trades(as_events(drain(pipeline.bootstrap, pipeline.source, len(values))))


def values_for(columns: tuple[tuple[str, str], ...], **over: object) -> dict[str, object]:
    return {n: over.get(n.upper(), TRADE.get(n.upper(), "NYSE")) for n, _ in columns}


@pytest.mark.parametrize("form", ["text", "descriptor"])
@pytest.mark.parametrize(
    "columns",
    [
        pytest.param(cols("REGIONID", "QUANTITY", "ACCOUNT", "PRICE", "SYMBOL", "SIDE"), id="symbol-account-swapped"),
        pytest.param(cols("REGIONID", "QUANTITY", "EXCHANGE", "SYMBOL", "PRICE", "ACCOUNT", "SIDE"), id="inserted"),
        pytest.param(cols("REGIONID", "QUANTITY", "SYMBOL", "PRICE", "ACCOUNT", "SIDE", "EXCHANGE"), id="appended"),
        pytest.param(cols("REGIONID", "QUANTITY", "SYMBOL", "PRICE"), id="dropped-unread"),
        pytest.param(cols("regionid", "price", "symbol", "quantity"), id="lower-case-reordered"),
        pytest.param(cols("REGIONID", "QUANTITY", "SYMBOL", "PRICE", PRICE="int64", QUANTITY="int64"), id="widened"),
    ],
)
def test_an_evolved_writer_settles_with_each_columns_own_value(
    pipeline: Pipeline, columns: tuple[tuple[str, str], ...], form: str
) -> None:
    encode = encoder(pipeline, columns, form)
    settle(pipeline, [encode(**values_for(columns)), encode(**values_for(columns, SYMBOL="QQQ", QUANTITY=3))])
    booked = decode_settlements(pipeline, drain(pipeline.bootstrap, pipeline.settlements, 2))
    assert sorted((s.symbol, s.amount, s.disposition) for s in booked) == [
        ("QQQ", 150.0, "Completed"),
        ("ZVV", 5000.0, "Completed"),
    ]
    assert drain(pipeline.bootstrap, pipeline.dlq, 0, timeout_s=1) == []


@pytest.mark.parametrize("form", ["text", "descriptor"])
def test_unreadable_columns_dead_letter_every_record_naming_the_column(pipeline: Pipeline, form: str) -> None:
    double = cols("REGIONID", "QUANTITY", "SYMBOL", "PRICE", PRICE="double")
    missing = cols("REGIONID", "QUANTITY", "ACCOUNT", "PRICE")
    widened = cols("REGIONID", "QUANTITY", "SYMBOL", "PRICE", PRICE="int64")
    settle(
        pipeline,
        [
            encoder(pipeline, double, form)(**values_for(double, PRICE=50.5)),
            encoder(pipeline, missing, form)(**values_for(missing)),
            encoder(pipeline, widened, form)(**values_for(widened, PRICE=2**31)),
        ],
    )
    dead = drain(pipeline.bootstrap, pipeline.dlq, 3)
    details = sorted(
        (h[deadletter.REASON].decode(), h[deadletter.DETAIL].decode()) for h in (dict(m.headers() or []) for m in dead)
    )
    assert [reason for reason, _ in details] == ["value-out-of-range", "wrong-schema-type", "wrong-schema-type"]
    assert "column PRICE holds 2147483648" in details[0][1]
    assert "it has no column SYMBOL" in details[1][1] or "it has no column SYMBOL" in details[2][1]
    assert any("column PRICE is double, UserTrade.price is int32" in d for _, d in details)
    assert drain(pipeline.bootstrap, pipeline.settlements, 0, timeout_s=1) == []
