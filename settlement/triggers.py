"""The Azure seam: `azure.functions` event types in, `InputRecord`s out. Kept thin so that everything
behind it is testable without the Functions host."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import azure.functions as func

from settlement.batch import BatchResult
from settlement.records import InputRecord
from settlement.service import processor


def parse_timestamp(raw: object) -> int | None:
    """Epoch milliseconds from the host's timestamp (ISO 8601 text, naive meaning UTC; or epoch ms)."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, int | float):
        return int(raw)
    text = str(raw).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def from_kafka_event(event: func.KafkaEvent) -> InputRecord:
    return InputRecord(
        key=_as_bytes(event.key),
        value=event.get_body(),
        topic=event.topic or "",
        partition=int(event.partition if event.partition is not None else -1),
        offset=int(event.offset if event.offset is not None else -1),
        timestamp_ms=parse_timestamp(event.timestamp),
    )


def settle_kafka_events(events: Sequence[func.KafkaEvent]) -> BatchResult:
    """The Kafka trigger's body: settle the batch or raise so the host retries it before moving the offset."""
    return processor().process([from_kafka_event(e) for e in events])
