"""Writer and reader schemas matched by column name, never by field number.

ksqlDB numbers a PROTOBUF value's fields by their position in the SELECT list, so a reordered or inserted
column gives the same number to another column, and a registry's Protobuf compatibility rules accept that.
Column names are ksqlDB's contract (unquoted identifiers are upper case, so names match case-insensitively);
numbers are positions. This module turns a writer's message into a parser that reads each column the
settlement needs from the writer's own number for that name, and refuses, naming the column and the type,
what cannot be read without loss. It runs once per writer schema id; the parser it returns is all a record
costs:

- the writer numbers and types our columns as `UserTrade` does: `UserTrade.FromString`, today's fast path;
- otherwise a message class compiled for this writer (our names, the writer's numbers and types), so a
  record still costs one C-level parse. A column widened from int32 (INT → BIGINT) is read whole and
  range-checked per record: a value that does not fit is dead-lettered, never truncated.

Nothing else converts. A string read as a number, a DOUBLE or DECIMAL price (fractional, so not an int32
without rounding), a wrapper or any message type: every record of that schema is dead-lettered with the
column and its type. Changing such a column is a contract change: docs/ksqldb.md, "Add a column, end to end".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeAlias

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from settlement.core.errors import PoisonRecord
from settlement.core.poison import PoisonKind
from settlement.core.records import INT32, READ_COLUMNS, TradeValue
from settlement.schemas.user_trade_pb2 import UserTrade

FieldProto: TypeAlias = descriptor_pb2.FieldDescriptorProto
Parser = Callable[[bytes], TradeValue]

# Integer types whose every value an int32 holds: read as they are. Any other integer type is range-checked.
_INT32_EXACT = frozenset({FieldProto.TYPE_INT32, FieldProto.TYPE_SINT32, FieldProto.TYPE_SFIXED32})
_INTEGERS = _INT32_EXACT | frozenset(
    {
        FieldProto.TYPE_INT64,
        FieldProto.TYPE_SINT64,
        FieldProto.TYPE_SFIXED64,
        FieldProto.TYPE_UINT32,
        FieldProto.TYPE_FIXED32,
        FieldProto.TYPE_UINT64,
        FieldProto.TYPE_FIXED64,
    }
)


def type_name(field: FieldProto) -> str:
    """A field's type as a schema author writes it: `int64`, `double`, `google.protobuf.StringValue`."""
    if field.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_ENUM, FieldProto.TYPE_GROUP):
        return field.type_name.lstrip(".") or FieldProto.Type.Name(field.type)
    text = FieldProto.Type.Name(field.type).removeprefix("TYPE_").lower()
    return f"repeated {text}" if field.label == FieldProto.LABEL_REPEATED else text


def _ours() -> Mapping[str, FieldProto]:
    reader = descriptor_pb2.DescriptorProto()
    UserTrade.DESCRIPTOR.CopyToProto(reader)
    return MappingProxyType({f.name: f for f in reader.field})


_OURS = _ours()


def _by_name(message: descriptor_pb2.DescriptorProto) -> dict[str, list[FieldProto]]:
    found: dict[str, list[FieldProto]] = {}
    for field in message.field:
        found.setdefault(field.name.lower(), []).append(field)
    return found


def _problem(ours: FieldProto, theirs: FieldProto) -> str | None:
    """Why the writer's column cannot be read into ours without loss, or None when it can."""
    repeated = FieldProto.LABEL_REPEATED
    same_shape = (theirs.label == repeated) == (ours.label == repeated)
    if same_shape and (theirs.type == ours.type or (ours.type == FieldProto.TYPE_INT32 and theirs.type in _INTEGERS)):
        return None
    return (
        f"column {theirs.name} is {type_name(theirs)}, UserTrade.{ours.name} is {type_name(ours)}: "
        "it cannot be read without loss"
    )


def reader_for(writer: descriptor_pb2.DescriptorProto, what: str) -> Parser:
    """The parser for records written with `writer`, or `PoisonRecord` (wrong-schema-type) naming each column
    the writer lacks, duplicates in another case, or types in a way an int32 or string cannot hold."""
    columns = _by_name(writer)
    problems: list[str] = []
    chosen: dict[str, FieldProto] = {}
    for name in READ_COLUMNS:
        found = columns.get(name, [])
        if not found:
            problems.append(f"it has no column {name.upper()}")
        elif len(found) > 1:
            problems.append(f"columns {', '.join(f.name for f in found)} differ only in case")
        elif (problem := _problem(_OURS[name], found[0])) is not None:
            problems.append(problem)
        else:
            chosen[name] = found[0]
    if problems:
        raise PoisonRecord(PoisonKind.WRONG_SCHEMA_TYPE, f"{what} cannot be read as UserTrade: {'; '.join(problems)}")
    if _same_layout(writer):
        return UserTrade.FromString
    return _view(chosen)


def _same_layout(writer: descriptor_pb2.DescriptorProto) -> bool:
    """Whether `UserTrade.FromString` reads the writer's bytes right: each number `UserTrade` declares is, in
    the writer, absent or the same column (by name) of the same type."""
    by_number = {f.number: f for f in writer.field}
    for ours in _OURS.values():
        theirs = by_number.get(ours.number)
        if theirs is None:
            continue
        if theirs.name.lower() != ours.name or theirs.type != ours.type or theirs.label != ours.label:
            return False
    return all(by_number.get(_OURS[name].number) is not None for name in READ_COLUMNS)


def _view(chosen: dict[str, FieldProto]) -> Parser:
    """A message class with our column names at the writer's numbers and types, in a pool of its own (views of
    different schema ids never clash), and the range checks its widened columns need."""
    fdp = descriptor_pb2.FileDescriptorProto(name="user_trade_view.proto", package="view", syntax="proto3")
    message = fdp.message_type.add(name="UserTradeView")
    for name, theirs in chosen.items():
        message.field.add(name=name, number=theirs.number, type=theirs.type, label=FieldProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    cls: Any = message_factory.GetMessageClass(pool.FindMessageTypeByName("view.UserTradeView"))
    widened = tuple((name, theirs.name) for name, theirs in chosen.items() if theirs.type in _INTEGERS - _INT32_EXACT)
    parse: Parser = cls.FromString
    if not widened:
        return parse

    def checked(body: bytes) -> TradeValue:
        trade = parse(body)
        for name, column in widened:
            value = getattr(trade, name)
            if not INT32[0] <= value <= INT32[1]:
                raise PoisonRecord(
                    PoisonKind.OUT_OF_RANGE, f"column {column} holds {value}, outside UserTrade.{name}'s int32 range"
                )
        return trade

    return checked


def layout_conflicts(ours: descriptor_pb2.DescriptorProto, theirs: descriptor_pb2.DescriptorProto) -> list[str]:
    """Why a reader holding `theirs` would misread what we write with `ours`: each field we write must be, at
    its number, the same column (by name, case-insensitively) of the same type and label. A reader's extra
    fields are harmless (they read as defaults); a number that means another column there is not."""
    by_number = {f.number: f for f in theirs.field}
    conflicts = []
    for field in ours.field:
        other = by_number.get(field.number)
        if other is None:
            conflicts.append(f"it has no field {field.number} ({field.name})")
        elif other.name.lower() != field.name.lower():
            conflicts.append(f"field {field.number} is {other.name} there, {field.name} here")
        elif other.type != field.type or other.label != field.label:
            conflicts.append(f"field {field.number} ({field.name}) is {type_name(other)}, expected {type_name(field)}")
    return conflicts
