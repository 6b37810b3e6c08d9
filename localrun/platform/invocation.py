"""A batch exactly as the Functions host + Kafka extension hand it to a cardinality=MANY, dataType=binary
Python function, converted by the `azure-functions` library's own `KafkaTriggerConverter`.

Modelled on the Kafka extension 4.3.x (`KafkaTriggerBindingStrategy.AddBindingData` and its Json.NET
serialisation of trigger metadata) and on the Python worker 4.x (`bindings.meta.from_incoming_proto`: the
parameter's annotation is checked with the converter, then `decode(datum, trigger_metadata=...)`):

- body: `collection_bytes`, one entry per record; a null value arrives as empty bytes;
- trigger metadata: `OffsetArray` (collection_sint64), `TopicArray` (collection_string), and as JSON text:
  `PartitionArray`, `TimestampArray`, `KeyArray`, `HeadersArray`, `LeaderEpochArray`, `IsPartitionEOFArray`;
- timestamps: the record timestamp as a UTC DateTime in Json.NET's default form (`2024-05-06T07:08:09.12Z`:
  fraction trimmed of trailing zeros, none at .000, always `Z`);
- keys (keyDataType String): UTF-8 text, invalid bytes replaced by U+FFFD; a null key is JSON null;
- headers: per record a list of `{"Key": name, "Value": base64 of the bytes}`.

Every local path that calls the Kafka-triggered function (local host, tests, benchmarks) goes through here.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import azure.functions as func
from azure.functions import meta
from confluent_kafka import Message

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class HostRecord(NamedTuple):
    """What the extension knows of one consumed record (a tuple: the local host builds one per record)."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: Sequence[tuple[str, bytes | None]] = ()
    leader_epoch: int | None = None
    is_partition_eof: bool = False

    @classmethod
    def of(cls, msg: Message) -> HostRecord:
        headers = msg.headers()
        return cls(
            msg.value(),
            msg.key(),
            str(msg.topic()),
            int(msg.partition() or 0),
            int(msg.offset() or 0),
            int(msg.timestamp()[1]),
            tuple(headers) if headers else (),  # type: ignore[arg-type]  # a list of (str, bytes | None)
            msg.leader_epoch(),
        )


class _Collection:
    """Stands for the worker's protobuf `CollectionBytes`/`CollectionString`/`CollectionSInt64` messages:
    the converter reads only their one repeated field (`.bytes`, `.string`, `.sint64`)."""

    def __init__(self, **repeated: list[Any]) -> None:
        self.__dict__.update(repeated)


def json_net_utc(timestamp_ms: int) -> str:
    """A UTC DateTime as Json.NET writes it by default (ISO 8601, `FFFFFFF` fraction, `Z`)."""
    seconds, millis = divmod(timestamp_ms, 1000)
    fraction = f"{millis:03d}".rstrip("0")
    return f"{_utc_seconds(seconds)}.{fraction}Z" if fraction else f"{_utc_seconds(seconds)}Z"


@functools.lru_cache(maxsize=4096)
def _utc_seconds(seconds: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` of an epoch second; cached, as a batch's records share a few seconds."""
    return (_EPOCH + timedelta(seconds=seconds)).isoformat(timespec="seconds")[:19]


def host_key(key: bytes | None) -> str | None:
    """A key as keyDataType String delivers it: .NET's UTF-8 decoding replaces invalid bytes with U+FFFD."""
    return None if key is None else key.decode("utf-8", errors="replace")


def host_headers(headers: Sequence[tuple[str, bytes | None]]) -> list[dict[str, str | None]]:
    return [
        {"Key": name, "Value": None if value is None else base64.b64encode(value).decode("ascii")}
        for name, value in headers
    ]


def host_json(value: Any) -> str:
    """A value as the host serialises binding data it has no typed form for (Json.NET, `Formatting.None`)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# How the host sends each of the extension's binding-data arrays (`ToRpc`, TypedDataCollection capability on):
# long[] and string[] as typed collections, every other array (int[], DateTime[], object[]) as JSON text.
COLLECTION_FIELD = {"collection_bytes": "bytes", "collection_sint64": "sint64", "collection_string": "string"}


def trigger_data(records: Sequence[HostRecord]) -> tuple[list[bytes], dict[str, tuple[str, list[Any]]]]:
    """One batch as the host hands it over: the bodies (`collection_bytes`) and each trigger-metadata array with
    the kind it travels as (`collection_sint64`, `collection_string` or `json`). The one place for that shape:
    `trigger_input` builds the worker's `Datum`s from it, localrun/platform/worker_host.py the host's messages."""
    metadata: dict[str, tuple[str, list[Any]]] = {
        "OffsetArray": ("collection_sint64", [r.offset for r in records]),
        "TopicArray": ("collection_string", [r.topic for r in records]),
        "PartitionArray": ("json", [r.partition for r in records]),
        "TimestampArray": ("json", [json_net_utc(r.timestamp_ms) for r in records]),
        "KeyArray": ("json", [host_key(r.key) for r in records]),
        "HeadersArray": ("json", [host_headers(r.headers) for r in records]),
        "LeaderEpochArray": ("json", [r.leader_epoch for r in records]),
        "IsPartitionEOFArray": ("json", [r.is_partition_eof for r in records]),
    }
    return [r.value or b"" for r in records], metadata


def trigger_input(records: Sequence[HostRecord]) -> tuple[meta.Datum, dict[str, meta.Datum]]:
    """The body datum and trigger metadata the worker receives for one batch."""
    bodies, arrays = trigger_data(records)
    metadata = {
        name: meta.Datum(host_json(values), "json")
        if kind == "json"
        else meta.Datum(_Collection(**{COLLECTION_FIELD[kind]: values}), kind)
        for name, (kind, values) in arrays.items()
    }
    return meta.Datum(_Collection(bytes=bodies), "collection_bytes"), metadata


def convert(body: meta.Datum, metadata: dict[str, meta.Datum], annotation: Any) -> list[func.KafkaEvent]:
    """The worker's half: check the parameter's annotation, then the library's converter decodes the batch."""
    converter = meta.get_binding_registry().get("kafkaTrigger")
    if not converter.check_input_type_annotation(annotation):
        raise TypeError(f"the worker refuses annotation {annotation!r} for a kafkaTrigger parameter")
    return list(converter.decode(body, trigger_metadata=metadata))


def to_events(records: Sequence[HostRecord], annotation: Any) -> list[func.KafkaEvent]:
    """Convert a batch as host and worker do: the host's data for it, then the worker's conversion."""
    body, metadata = trigger_input(records)
    return convert(body, metadata, annotation)


def messages_to_events(messages: Sequence[Message], annotation: Any) -> list[func.KafkaEvent]:
    """Consumed messages → the `KafkaEvent` list the function receives."""
    return to_events([HostRecord.of(m) for m in messages], annotation)
