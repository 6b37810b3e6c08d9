"""The `user_trades` value schema as ksqlDB registers it, so local runs exercise the shape production sees.

ksqlDB generates the PROTOBUF schema from the `USER_TRADES` SELECT list (ksql/02-user-trades.sql) and
registers it as `.proto` text, not as a base64 descriptor: upper-case field names, numbered in column order
from 1, the package and message name taken from `VALUE_SCHEMA_FULL_NAME` (`ConnectDefault1` without one),
and every column `optional` under `VALUE_PROTOBUF_NULLABLE_REPRESENTATION = 'OPTIONAL'`. Its serializer then
frames each value with message index [0]. `tests/unit/test_ksql_contract.py` keeps this text in step with
the statement.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from google.protobuf import descriptor_pool, message_factory

from settlement.schemas import UserTrade
from settlement.serde import compile_text, frame_header

FULL_NAME = "tradesettlement.v1.UserTrade"
COLUMNS: tuple[tuple[str, str], ...] = (
    ("REGIONID", "string"),
    ("QUANTITY", "int32"),
    ("SYMBOL", "string"),
    ("PRICE", "int32"),
    ("ACCOUNT", "string"),
    ("SIDE", "string"),
)


# ksqlDB column types → the proto3 scalar types its PROTOBUF format writes.
KSQL_TYPES = {
    "VARCHAR": "string",
    "STRING": "string",
    "INT": "int32",
    "INTEGER": "int32",
    "BIGINT": "int64",
    "DOUBLE": "double",
}


def schema_text(
    full_name: str | None = FULL_NAME, optional: bool = True, columns: tuple[tuple[str, str], ...] = COLUMNS
) -> str:
    """The text ksqlDB registers for a value of `columns` (name, proto type), numbered in order from 1.
    `full_name=None`: no VALUE_SCHEMA_FULL_NAME, so `ConnectDefault1` in no package."""
    package, _, message = (full_name or "ConnectDefault1").rpartition(".")
    label = "optional " if optional else ""
    lines = ['syntax = "proto3";', ""]
    if package:
        lines += [f"package {package};", ""]
    lines.append(f"message {message} {{")
    lines += [f"  {label}{ptype} {name} = {number};" for number, (name, ptype) in enumerate(columns, 1)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def register(client: SchemaRegistryClient, subject: str, text: str | None = None) -> int:
    """Register the value schema as ksqlDB does; returns its id."""
    return client.register_schema(subject, Schema(text or schema_text(), "PROTOBUF"))


def encode(schema_id: int, trade: UserTrade) -> bytes:
    """A value as ksqlDB's serializer writes it: the Confluent framing with message index [0], then the trade."""
    return frame_header(schema_id) + trade.SerializeToString()


def writer_class(text: str) -> Any:
    """The message class a producer holding `text` writes with (its first message), to encode values in a
    schema other than ours: columns reordered, inserted or retyped, as an edited SELECT list makes them."""
    fdp = compile_text(text)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    name = f"{fdp.package}.{fdp.message_type[0].name}" if fdp.package else fdp.message_type[0].name
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
