"""Dead letters: the original record plus headers giving the reason and the source coordinates, so an
operator can find, explain and replay each poison record. Values are the original bytes, untouched, unless
the record is too large to write whole (then a bounded prefix with the original size and SHA-256); headers
never carry secrets."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from settlement.core.errors import PoisonRecord
from settlement.core.poison import PoisonKind
from settlement.core.records import InputRecord

REASON = "dlq.reason"
DETAIL = "dlq.detail"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
SOURCE_TIMESTAMP = "dlq.source.timestamp"
FAILED_AT = "dlq.failed.at"
ORIGINAL_VALUE_BYTES = "dlq.original.value.bytes"
ORIGINAL_VALUE_SHA256 = "dlq.original.value.sha256"
ORIGINAL_KEY_BYTES = "dlq.original.key.bytes"
ORIGINAL_KEY_SHA256 = "dlq.original.key.sha256"
ORIGINAL_HEADERS_BYTES = "dlq.original.headers.bytes"
PREFIX_BYTES = 1024  # what a shrunk dead letter keeps of an oversize value or key
SHRUNK = 0  # the size limit that makes a dead letter shrunk (a prefix of PREFIX_BYTES), whatever the topic allows
PRODUCER_REFUSED = "the producer refused it as too large"
BROKER_REFUSED = "the broker refused it as too large for the topic"
_DETAIL_BYTES = 1024
# librdkafka counts key + value + headers against message.max.bytes; keep a margin for its framing.
_OVERHEAD = 512
# The headers a dead letter gains (beside the record's own), whatever the record carried under these names.
HEADERS = frozenset({REASON, DETAIL, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, SOURCE_TIMESTAMP, FAILED_AT})


def dead_letter_headers(record: InputRecord, poison: PoisonRecord, now_s: float) -> list[tuple[str, bytes]]:
    """Headers for one dead-letter record: the record's own headers, then ours (which replace any of the same
    name the record already carried); `now_s` is when it was dead-lettered (epoch seconds)."""
    stamp = "" if record.timestamp_ms is None else str(record.timestamp_ms)
    failed_at = datetime.fromtimestamp(now_s, UTC).isoformat(timespec="milliseconds")
    own = [(name, value) for name, value in record.headers if name not in HEADERS]
    return [
        *own,
        (REASON, poison.kind.value.encode()),
        (DETAIL, poison.detail.encode()[:_DETAIL_BYTES]),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
        (SOURCE_TIMESTAMP, stamp.encode()),
        (FAILED_AT, failed_at.encode()),
    ]


def refused_as_too_large(detail: str) -> PoisonRecord:
    """What a record the producer or the broker refused as too large becomes, on either delivery path: poison of
    kind `oversize`, dead-lettered with limit `SHRUNK` (nothing of it was written, so size never fails a batch)."""
    return PoisonRecord(PoisonKind.OVERSIZE, detail)


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """What a record weighs against the producer's `message.max.bytes`, with a margin."""
    return len(key or b"") + len(value or b"") + sum(len(n) + len(v or b"") for n, v in headers) + _OVERHEAD


def _fingerprint(name_bytes: str, name_sha: str, data: bytes) -> list[tuple[str, bytes]]:
    return [(name_bytes, str(len(data)).encode()), (name_sha, hashlib.sha256(data).hexdigest().encode())]


def dead_letter(
    record: InputRecord, poison: PoisonRecord, now_s: float, max_bytes: int
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) of one dead letter that the producer will accept.

    A record that fits is written whole. One that does not (a value or key near or over `max_bytes`, or a
    record whose own headers are huge) keeps a bounded prefix of what is too big, plus headers giving the
    original sizes and SHA-256, so an operator can still identify it and fetch the original from the source
    offset while retention lasts.
    """
    headers = dead_letter_headers(record, poison, now_s)
    key, value = record.key, record.value
    if record_size(key, value, headers) <= max_bytes:
        return key, value, headers
    own = [(n, v) for n, v in headers if n not in HEADERS]
    ours = [(n, v) for n, v in headers if n in HEADERS]
    extra: list[tuple[str, bytes]] = []
    own_size = sum(len(n) + len(v or b"") for n, v in own)
    if own_size > PREFIX_BYTES:
        extra.append((ORIGINAL_HEADERS_BYTES, str(own_size).encode()))
        own = []
    if value is not None and len(value) > PREFIX_BYTES:
        extra += _fingerprint(ORIGINAL_VALUE_BYTES, ORIGINAL_VALUE_SHA256, value)
        value = value[:PREFIX_BYTES]
    if key is not None and len(key) > PREFIX_BYTES:
        extra += _fingerprint(ORIGINAL_KEY_BYTES, ORIGINAL_KEY_SHA256, key)
        key = key[:PREFIX_BYTES]
    return key, value, [*own, *ours, *extra]
