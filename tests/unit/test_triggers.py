"""The Azure seam: real `func.KafkaEvent` objects become `InputRecord`s faithfully."""

from __future__ import annotations

import azure.functions as func
import pytest

from settlement.core.records import InputRecord, host_key, parse_timestamp
from settlement.runtime.triggers import from_kafka_event


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-25T11:46:33.123Z", 1_795_607_193_123),
        ("2026-11-25T11:46:33Z", 1_795_607_193_000),  # Json.NET writes no fraction at .000
        (" 2026-11-25T11:46:33.123Z ", 1_795_607_193_123),  # not the host's form: the general path
        ("1795607193123Z", None),
        ("Z", None),
        ("2026-11-25T11:46:33.1234567Z", 1_795_607_193_123),  # .NET ticks precision
        ("2026-11-25T11:46:33.123", 1_795_607_193_123),  # naive means UTC
        ("2026-11-25T12:46:33.123+01:00", 1_795_607_193_123),
        ("1795607193123", 1_795_607_193_123),
        (1_795_607_193_123, 1_795_607_193_123),
        (None, None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_parse_timestamp(raw: object, expected: int | None) -> None:
    assert parse_timestamp(raw) == expected


def test_kafka_event_to_record() -> None:
    event = func.KafkaEvent(
        body=b"\x00\x00\x00\x00\x01\x00",
        key="User_7",
        offset=42,
        partition=3,
        topic="user_trades",
        timestamp="2026-11-25T11:46:33.123Z",
        headers=[],
    )
    assert from_kafka_event(event) == InputRecord(
        b"User_7", b"\x00\x00\x00\x00\x01\x00", "user_trades", 3, 42, 1_795_607_193_123
    )


def test_null_key_stays_null() -> None:
    event = func.KafkaEvent(body=b"", key=None, offset=0, partition=0, topic="t", timestamp=None)
    record = from_kafka_event(event)
    assert (record.key, record.value, record.timestamp_ms) == (None, b"", None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("U1", b"U1"),  # the worker's text key
        (b"U1", b"U1"),  # a key read from Kafka by a gap or the repair
        (b"U\xff1", "U\ufffd1".encode()),  # invalid UTF-8: replaced, as the extension's String key type does
        ("Zoë", "Zoë".encode()),
        (b"", b""),
    ],
)
def test_a_key_settles_to_the_same_bytes_from_the_trigger_and_from_a_source_read(
    raw: object, expected: bytes | None
) -> None:
    assert host_key(raw) == expected
