"""docs/ksqldb.md "Add a column, end to end", walked against the real registry and the function.

The statement is edited as a user edits it (a column appended to the USER_TRADES select list, or inserted in
the middle); the schema ksqlDB would register for the edited list is derived from the statement itself and
registered in the same subject after today's, under the BACKWARD rule Confluent Cloud applies by default;
trades written with either version settle with each column's own value, before the proto changes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

import function_app
from localrun.experiments import ksql_schema
from settlement.serde.framing import frame_header
from tests.integration.pipeline import Pipeline, as_events, decode_settlements
from tests.kafka_helpers import drain, produce
from tests.unit.test_ksql_contract import statement, user_trades_value_columns

pytestmark = pytest.mark.integration
PROTO_TYPES = ksql_schema.KSQL_TYPES
VALUES = {"REGIONID": "Region_1", "QUANTITY": 100, "SYMBOL": "ZVV", "PRICE": 50, "ACCOUNT": "A1", "SIDE": "BUY"}


def _compatibility(registry_url: str, subject: str, level: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - the local registry
        f"{registry_url}/config/{subject}",
        data=json.dumps({"compatibility": level}).encode(),
        method="PUT",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310


def schema_of(text: str) -> str:
    cols = tuple((alias, PROTO_TYPES[t]) for alias, t in user_trades_value_columns(text))
    return ksql_schema.schema_text(columns=cols)


def _value(text: str, schema_id: int, **values: object) -> bytes:
    cls = ksql_schema.writer_class(text)
    fields = {f.name: values.get(f.name, VALUES.get(f.name, "FEMALE")) for f in cls.DESCRIPTOR.fields}
    return frame_header(schema_id) + cls(**fields).SerializeToString()


def test_an_appended_column_registers_compatibly_and_both_versions_settle(pipeline: Pipeline) -> None:
    today = statement(r"CREATE STREAM IF NOT EXISTS USER_TRADES WITH")
    edited = today.replace("  S.SIDE AS SIDE\n", "  S.SIDE AS SIDE,\n  U.GENDER AS GENDER\n")
    assert edited != today
    subject = f"{pipeline.source}-value"
    _compatibility(pipeline.registry_url, subject, "BACKWARD")
    client = SchemaRegistryClient({"url": pipeline.registry_url})
    old_text, new_text = schema_of(today), schema_of(edited)
    assert "optional string GENDER = 7;" in new_text
    old_id = client.register_schema(subject, Schema(old_text, "PROTOBUF"))
    new_id = client.register_schema(subject, Schema(new_text, "PROTOBUF"))
    assert new_id != old_id and len(client.get_versions(subject)) == 2
    values = [_value(old_text, old_id), _value(new_text, new_id, SYMBOL="QQQ", QUANTITY=3)]
    produce(pipeline.bootstrap, pipeline.source, [(b"User_1", v) for v in values], partition=0)
    function_app.settle_user_trades(as_events(drain(pipeline.bootstrap, pipeline.source, 2)))
    booked = decode_settlements(pipeline, drain(pipeline.bootstrap, pipeline.settlements, 2))
    assert sorted((s.symbol, s.amount) for s in booked) == [("QQQ", 150.0), ("ZVV", 5000.0)]


def test_a_column_inserted_mid_list_settles_by_name_whatever_the_registry_says(pipeline: Pipeline) -> None:
    today = statement(r"CREATE STREAM IF NOT EXISTS USER_TRADES WITH")
    edited = today.replace("  S.SYMBOL AS SYMBOL,\n", "  U.GENDER AS GENDER,\n  S.SYMBOL AS SYMBOL,\n")
    new_text = schema_of(edited)
    assert "optional string GENDER = 3;" in new_text and "optional string SYMBOL = 4;" in new_text
    subject = f"{pipeline.source}-value"
    _compatibility(pipeline.registry_url, subject, "BACKWARD")
    client = SchemaRegistryClient({"url": pipeline.registry_url})
    client.register_schema(subject, Schema(schema_of(today), "PROTOBUF"))
    try:
        new_id = client.register_schema(subject, Schema(new_text, "PROTOBUF"))
        refused = None
    except (SchemaRegistryError, urllib.error.HTTPError) as exc:
        # SYMBOL's number now holds another string and PRICE's a string: a registry may refuse it (docs/ksqldb.md).
        refused = exc
        new_id = client.register_schema(f"{subject}-inserted", Schema(new_text, "PROTOBUF"))
    print(f"registry under BACKWARD: {'refused' if refused else 'accepted'} the mid-list insertion")
    produce(pipeline.bootstrap, pipeline.source, [(b"User_1", _value(new_text, new_id))], partition=0)
    function_app.settle_user_trades(as_events(drain(pipeline.bootstrap, pipeline.source, 1)))
    [booked] = decode_settlements(pipeline, drain(pipeline.bootstrap, pipeline.settlements, 1))
    assert (booked.symbol, booked.amount, booked.disposition) == ("ZVV", 5000.0, "Completed")
