"""The settlement schema: the function's registration and the one ksqlDB makes for TRADE_SETTLEMENTS
(generated from ksql/04's declared columns and VALUE_SCHEMA_FULL_NAME) must both be accepted, whichever comes
first, under a BACKWARD compatibility rule; and a function configured not to register uses what is there."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

import function_app
from localrun.experiments import ksql_schema
from scripts.ksql_apply import KSQL_DIR, load_statements
from tests.integration.pipeline import Pipeline, as_events, decode_settlements
from tests.integration.test_registry import TRADE
from tests.kafka_helpers import drain, produce

pytestmark = pytest.mark.integration


def ksqldb_settlement_text(full_name: str | None) -> str:
    """What ksqlDB registers for TRADE_SETTLEMENTS: value columns of ksql/04 in order (the key is not in it)."""
    [text] = [
        s.text for s in load_statements([KSQL_DIR / "04-settlement-analysis.sql"]) if "TRADE_SETTLEMENTS (" in s.text
    ]
    body = text[text.index("(") + 1 : text.index(") WITH")]
    columns = []
    for part in (p.strip() for p in body.split(",")):
        name, ktype, rest = re.match(r"`?(\w+)`?\s+(\w+)(.*)", part).groups()  # type: ignore[union-attr]
        if "KEY" not in rest.upper():
            columns.append((name, ksql_schema.KSQL_TYPES[ktype.upper()]))
    declared = re.search(r"VALUE_SCHEMA_FULL_NAME = '([\w.]+)'", text)
    assert declared is not None
    return ksql_schema.schema_text(full_name or None, optional=False, columns=tuple(columns))


def _backward(registry_url: str, subject: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - the local registry
        f"{registry_url}/config/{subject}",
        data=json.dumps({"compatibility": "BACKWARD"}).encode(),
        method="PUT",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310


def _settle_one(pipeline: Pipeline) -> None:
    ser, ctx = pipeline.serializer()
    produce(pipeline.bootstrap, pipeline.source, [(b"User_1", ser(TRADE, ctx))])
    function_app.settle_user_trades(as_events(drain(pipeline.bootstrap, pipeline.source, 1)))


def _register_ksqldb(pipeline: Pipeline, full_name: str | None) -> int:
    client = SchemaRegistryClient({"url": pipeline.registry_url})
    return ksql_schema.register(client, f"{pipeline.settlements}-value", ksqldb_settlement_text(full_name))


@pytest.mark.parametrize("order", ["ksqldb-first", "function-first"])
def test_both_registrations_are_accepted_in_either_order(pipeline: Pipeline, order: str) -> None:
    _backward(pipeline.registry_url, f"{pipeline.settlements}-value")
    full_name = "tradesettlement.v1.TradeSettlement"
    if order == "ksqldb-first":
        _register_ksqldb(pipeline, full_name)
        _settle_one(pipeline)
    else:
        _settle_one(pipeline)
        _register_ksqldb(pipeline, full_name)
    [settlement] = decode_settlements(pipeline, drain(pipeline.bootstrap, pipeline.settlements, 1))
    assert settlement.symbol == "ZVV"


def test_without_the_full_name_ksqldbs_schema_would_be_refused(pipeline: Pipeline) -> None:
    _backward(pipeline.registry_url, f"{pipeline.settlements}-value")
    _settle_one(pipeline)
    with pytest.raises(SchemaRegistryError, match="compatib"):
        _register_ksqldb(pipeline, None)  # ConnectDefault1: another message to the registry


def test_without_auto_register_the_function_uses_the_registered_schema(pipeline: Pipeline, monkeypatch) -> None:
    schema_id = _register_ksqldb(pipeline, "tradesettlement.v1.TradeSettlement")
    monkeypatch.setenv("SCHEMA_REGISTRY_AUTO_REGISTER", "false")
    function_app.root.reset()
    _settle_one(pipeline)
    [msg] = drain(pipeline.bootstrap, pipeline.settlements, 1)
    assert int.from_bytes((msg.value() or b"")[1:5], "big") == schema_id


def test_without_auto_register_a_latest_schema_whose_numbers_mean_other_columns_is_refused(
    pipeline: Pipeline, monkeypatch
) -> None:
    # ksqlDB's TRADE_SETTLEMENTS with `user` and `symbol` declared in each other's place: same types, so a
    # number-and-type check passes it, and a reader of that schema would see each user as the symbol.
    text = ksqldb_settlement_text("tradesettlement.v1.TradeSettlement")
    text = text.replace("string user = 1;", "string USER_SWAP = 1;").replace("string symbol = 2;", "string user = 2;")
    text = text.replace("string USER_SWAP = 1;", "string symbol = 1;")
    assert "string symbol = 1;" in text and "string user = 2;" in text
    client = SchemaRegistryClient({"url": pipeline.registry_url})
    ksql_schema.register(client, f"{pipeline.settlements}-value", text)
    monkeypatch.setenv("SCHEMA_REGISTRY_AUTO_REGISTER", "false")
    function_app.root.reset()
    with pytest.raises(Exception, match="field 1 is symbol there, user here"):
        _settle_one(pipeline)
    assert drain(pipeline.bootstrap, pipeline.settlements, 0, timeout_s=1) == []
