"""Dead-letter record headers: the reason and the source coordinates, so an operator can find, explain
and replay each poison record. Values are the original bytes, untouched; headers never carry secrets."""

from __future__ import annotations

from datetime import UTC, datetime

from settlement.poison import PoisonRecord
from settlement.records import InputRecord

REASON = "dlq.reason"
DETAIL = "dlq.detail"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
SOURCE_TIMESTAMP = "dlq.source.timestamp"
FAILED_AT = "dlq.failed.at"
_OURS = frozenset({REASON, DETAIL, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, SOURCE_TIMESTAMP, FAILED_AT})


def dead_letter_headers(record: InputRecord, poison: PoisonRecord, now_s: float) -> list[tuple[str, bytes]]:
    """Headers for one dead-letter record: the record's own headers, then ours (which replace any of the same
    name the record already carried); `now_s` is when it was dead-lettered (epoch seconds)."""
    stamp = "" if record.timestamp_ms is None else str(record.timestamp_ms)
    failed_at = datetime.fromtimestamp(now_s, UTC).isoformat(timespec="milliseconds")
    own = [(name, value) for name, value in record.headers if name not in _OURS]
    return [
        *own,
        (REASON, poison.kind.value.encode()),
        (DETAIL, poison.detail.encode()),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
        (SOURCE_TIMESTAMP, stamp.encode()),
        (FAILED_AT, failed_at.encode()),
    ]
