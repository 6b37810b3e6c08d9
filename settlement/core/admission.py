"""The record checks every input kind passes before its payload is read: key, timestamp, size.

One place for them, whichever entry path delivered the record (the Kafka trigger, the sink connector's POST,
a redrive). What the payload itself holds (framing, schema, columns, JSON) is the decoder's to check
(settlement/serde/framing.py, decoder.py, columns.py, json_value.py); what the settlement becomes (its size, a
broker's refusal) is the batch's (settlement/delivery/batch.py). Each check raises `PoisonRecord`: retrying cannot
change the record.
"""

from __future__ import annotations

from settlement.core.errors import PoisonRecord
from settlement.core.poison import PoisonKind
from settlement.core.records import InputRecord


def admit(record: InputRecord, max_value_bytes: int) -> str | None:
    """The record's user (its USERID key as text; None for a null or empty key, the "no user" case), after
    checking what makes a record unsettleable before its payload is read.

    The Kafka trigger delivers keys as text (keyDataType String): bytes that are not UTF-8 arrive replaced by
    U+FFFD, so the original user id is gone. Settling such a trade would book it to a mangled user, so it is
    dead-lettered as bad-key (with the key as delivered) instead. (One function, no helpers: it runs per
    record.)"""
    key = record.key
    user: str | None = None
    if key:
        try:
            user = key.decode("utf-8")
        except UnicodeDecodeError:
            user = "\ufffd"
        if "\ufffd" in user:
            raise PoisonRecord(
                PoisonKind.BAD_KEY, "record key was not UTF-8 text (the host replaced bytes with U+FFFD)"
            )
    if record.timestamp_ms is None:
        raise PoisonRecord(PoisonKind.NO_TIMESTAMP, "the record carries no Kafka timestamp")
    value = record.value
    if value is not None and len(value) > max_value_bytes:
        raise PoisonRecord(
            PoisonKind.OVERSIZE,
            f"value is {len(value)} bytes, over the limit of {max_value_bytes} (SETTLEMENT_MAX_RECORD_BYTES)",
        )
    return user
