"""Batches reach the function shaped as the host + Kafka extension send them, through the library's converter."""

from __future__ import annotations

import base64
import json
import typing

import azure.functions as func
import pytest

from localrun.platform.invocation import HostRecord, json_net_utc, to_events, trigger_input
from settlement.runtime.triggers import from_kafka_event

ANNOTATION = typing.List[func.KafkaEvent]  # noqa: UP006


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1714979289000, "2024-05-06T07:08:09Z"),
        (1714979289120, "2024-05-06T07:08:09.12Z"),
        (1714979289100, "2024-05-06T07:08:09.1Z"),
        (1714979289123, "2024-05-06T07:08:09.123Z"),
        (1714979289007, "2024-05-06T07:08:09.007Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (253402300799999, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_timestamps_are_written_as_json_net_writes_a_utc_datetime(ms: int, text: str) -> None:
    assert json_net_utc(ms) == text


RECORDS = [
    HostRecord(b"\x00v1", b"User_1", "ut", 2, 10, 1714979289120, (("traceparent", b"00-abc"), ("bin", b"\xff\x00"))),
    HostRecord(None, None, "ut", 2, 11, 1714979289000),
    HostRecord(b"\x00v3", b"\xff\xfeUser", "ut", 0, 5, 1714979289007, leader_epoch=3),
]


def test_metadata_has_the_types_and_json_the_extension_sends() -> None:
    body, meta = trigger_input(RECORDS)
    assert body.type == "collection_bytes" and body.value.bytes == [b"\x00v1", b"", b"\x00v3"]
    assert meta["OffsetArray"].type == "collection_sint64" and meta["OffsetArray"].value.sint64 == [10, 11, 5]
    assert meta["TopicArray"].type == "collection_string" and meta["TopicArray"].value.string == ["ut"] * 3
    json_fields = ("PartitionArray", "TimestampArray", "KeyArray", "HeadersArray", "LeaderEpochArray")
    assert all(meta[k].type == "json" for k in (*json_fields, "IsPartitionEOFArray"))
    assert json.loads(meta["KeyArray"].value) == ["User_1", None, "\ufffd\ufffdUser"]
    assert json.loads(meta["TimestampArray"].value)[0] == "2024-05-06T07:08:09.12Z"
    assert json.loads(meta["HeadersArray"].value)[0] == [
        {"Key": "traceparent", "Value": base64.b64encode(b"00-abc").decode()},
        {"Key": "bin", "Value": "/wA="},
    ]
    assert json.loads(meta["LeaderEpochArray"].value) == [None, None, 3]


def test_the_library_converter_builds_events_our_trigger_reads_back_whole() -> None:
    events = to_events(RECORDS, ANNOTATION)
    assert [e.offset for e in events] == [10, 11, 5]
    assert [e.get_body() for e in events] == [b"\x00v1", b"", b"\x00v3"]
    records = [from_kafka_event(e) for e in events]
    assert [r.key for r in records] == [b"User_1", None, "\ufffd\ufffdUser".encode()]
    assert [r.timestamp_ms for r in records] == [1714979289120, 1714979289000, 1714979289007]
    assert records[0].headers == (("traceparent", b"00-abc"), ("bin", b"\xff\x00"))
    assert records[1].headers == ()
    assert records[1].value == b""


def test_the_worker_annotation_check_runs_before_conversion() -> None:
    with pytest.raises(TypeError, match="refuses annotation"):
        to_events(RECORDS, list[func.KafkaEvent])
