"""The Confluent wire framing of a Schema Registry value: magic byte 0, a 4-byte schema id, then the
message-index path of the record's message in its schema (the single byte 0 for the first message).

The common framing is read by slicing; anything else goes through confluent-kafka's own `SchemaId` parser,
after the index array is bounded (a hostile record must not cost seconds of CPU). Framing that cannot be
read is the record's poison (bad-magic-byte, truncated-header), never the batch's failure.
"""

from __future__ import annotations

import io
import struct

from confluent_kafka.schema_registry.serde import SchemaId
from confluent_kafka.serialization import SerializationError

from settlement.core.errors import PoisonRecord
from settlement.core.poison import PoisonKind

MAGIC = 0
HEADER_MIN = 6  # magic + 4-byte id + at least one message-index byte


def frame_header(schema_id: int) -> bytes:
    """The 6-byte Confluent framing of a value of the schema's first message: magic, id, message index [0]."""
    return b"\x00" + schema_id.to_bytes(4, "big") + b"\x00"


def split(value: bytes) -> tuple[int, tuple[int, ...], bytes]:
    """(schema id, message-index path, Protobuf payload) of a framed value, or `PoisonRecord`."""
    if value[0] != MAGIC:
        raise PoisonRecord(
            PoisonKind.BAD_MAGIC_BYTE, f"first byte is 0x{value[0]:02x}, not the Confluent magic byte 0x00"
        )
    if len(value) < HEADER_MIN:
        raise PoisonRecord(PoisonKind.TRUNCATED_HEADER, f"value is {len(value)} bytes, shorter than the framing")
    if value[5] == 0:
        # The common framing, message-index path [0] written as the single byte 0x00.
        return int.from_bytes(value[1:5], "big"), (0,), value[HEADER_MIN:]
    _check_index_framing(value)
    schema_id = SchemaId("PROTOBUF")  # anything else: confluent-kafka's own parser
    try:
        payload = schema_id.from_bytes(io.BytesIO(value))
    except (SerializationError, EOFError, struct.error, IndexError) as exc:
        raise PoisonRecord(PoisonKind.TRUNCATED_HEADER, f"unreadable message-index framing ({exc})") from None
    assert schema_id.id is not None
    return schema_id.id, tuple(schema_id.message_indexes or [0]), payload.read()


_MAX_INDEXES = 16  # message nesting depth; real schemas stay in single digits
_MAX_VARINT_BYTES = 5  # a zigzag int32


def _check_index_framing(value: bytes) -> None:
    """Bound the message-index array before anyone parses it: a hostile record with a 65 KB varint or
    millions of indexes would otherwise cost seconds of CPU in the parser. Beyond the limits it is poison."""
    pos = 5

    def varint() -> int:
        nonlocal pos
        start = pos
        while pos < len(value) and value[pos] & 0x80 and pos - start < _MAX_VARINT_BYTES:
            pos += 1
        if pos >= len(value) or pos - start >= _MAX_VARINT_BYTES:
            raise PoisonRecord(PoisonKind.TRUNCATED_HEADER, "message-index framing is truncated or over its limits")
        pos += 1
        raw = 0
        for shift, byte in enumerate(value[start:pos]):
            raw |= (byte & 0x7F) << (7 * shift)
        return (raw >> 1) ^ -(raw & 1)  # zigzag

    count = varint()
    if not 0 < count <= _MAX_INDEXES:
        raise PoisonRecord(PoisonKind.TRUNCATED_HEADER, f"message-index count {count} is outside 1..{_MAX_INDEXES}")
    for _ in range(count):
        varint()
