"""The local engine's Python UDFs: Confluent-framed Protobuf in and out, which OSS Flink has no format for
(FLINK-34440 never landed; Confluent Cloud's `protobuf-registry` format does this there).

Runs inside the engine's environment (protobuf 5, PyFlink): the message classes are the `_pb2` modules compiled
from proto/ at set-up for that protobuf (devstack/flink.py). Columns are matched to message fields by name,
case-insensitively, never by number, as the settlement function reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def strip_framing(value: bytes) -> bytes:
    """The Protobuf payload of a Confluent-framed value: magic byte 0, a 4-byte schema id, then the message-index
    array (a zigzag varint count, then that many zigzag varint indexes; [0] is written as the single byte 0)."""
    if len(value) < 6 or value[0] != 0:
        raise ValueError("not a Confluent-framed value")
    pos = 5
    count, pos = _zigzag(value, pos)
    for _ in range(count):
        _, pos = _zigzag(value, pos)
    return value[pos:]


def _zigzag(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated message-index varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


def framing(schema_id: int) -> bytes:
    """The Confluent header with message index [0] (the first message of the schema), as ksqlDB writes it."""
    return b"\x00" + schema_id.to_bytes(4, "big") + b"\x00"


def _fields(message_class: Any, columns: Sequence[str]) -> list[str]:
    by_lower = {f.name.lower(): f.name for f in message_class.DESCRIPTOR.fields}
    missing = [c for c in columns if c.lower() not in by_lower]
    if missing:
        raise ValueError(f"{message_class.DESCRIPTOR.full_name} has no field for column(s) {missing}")
    return [by_lower[c.lower()] for c in columns]


def decoder(message_class: Any, columns: Sequence[str]) -> Callable[[bytes | None], tuple[Any, ...] | None]:
    """value bytes -> the columns' values in order; None for a value that is not a framed `message_class` (the
    decode view drops it, as ksqlDB skips a record it cannot deserialize). An unset optional field is None."""
    names = _fields(message_class, columns)
    optional = {f.name for f in message_class.DESCRIPTOR.fields if f.has_presence}
    parse = message_class.FromString

    def decode(value: bytes | None) -> tuple[Any, ...] | None:
        if not value:
            return None
        try:
            message = parse(strip_framing(value))
        except Exception:  # noqa: BLE001 - any undecodable value is skipped, never fails the job
            return None
        return tuple(
            None if name in optional and not message.HasField(name) else getattr(message, name) for name in names
        )

    return decode


def encoder(message_class: Any, columns: Sequence[str]) -> Callable[..., bytes]:
    """(schema id, the columns' values in order) -> a framed value; a None value leaves its field unset."""
    names = _fields(message_class, columns)

    def encode(schema_id: int, *values: Any) -> bytes:
        message = message_class()
        for name, value in zip(names, values, strict=True):
            if value is not None:
                setattr(message, name, value)
        return framing(schema_id) + message.SerializeToString()

    return encode
