"""The Confluent Azure Functions Sink Connector contract: a POSTed JSON array of
`{"key", "value", "topic", "partition", "offset", "timestamp"}` records in, a JSON array of per-record
results (aligned 1:1 with the request) out.

The connector sends struct values as schemaless JSON (field names as in the ksqlDB-generated schema, upper
case) and bytes as base64 strings. A malformed request is rejected whole (400, nothing produced); a record that
cannot be settled is dead-lettered like on the Kafka path; only a failure to deliver answers 5xx, which the
connector retries.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from settlement.batch import BatchResult, SettlementProcessor
from settlement.poison import PoisonKind, PoisonRecord
from settlement.producer import DeliveryError
from settlement.records import InputRecord, parse_timestamp
from settlement.schemas.user_trade_pb2 import UserTrade
from settlement.serde import TransientError

_INT32 = (-(2**31), 2**31 - 1)
_STRING_FIELDS = ("regionid", "symbol", "account", "side")
_INT_FIELDS = ("quantity", "price")


class MalformedRequest(ValueError):
    """The request as a whole is not the connector's format: answered 400, nothing is produced."""


def _key_bytes(key: Any, index: int) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, bool) or not isinstance(key, int | float):
        raise MalformedRequest(f"record {index}: key must be a string, a number or null")
    return str(key).encode("utf-8")


def _value_bytes(value: Any) -> bytes | None:
    """Struct → its JSON (decoded by `trade_from_json`); base64 string → the raw (framed) bytes."""
    if value is None:
        return None
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


def parse_batch(body: bytes) -> list[InputRecord]:
    """Validate the request shape; raise `MalformedRequest` naming the first problem."""
    try:
        data = json.loads(body or b"")
    except json.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not JSON (line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise MalformedRequest("body is not UTF-8 text") from None
    if not isinstance(data, list):
        raise MalformedRequest("body must be a JSON array of records")
    records = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise MalformedRequest(f"record {i}: must be a JSON object")
        topic, partition, offset = item.get("topic"), item.get("partition"), item.get("offset")
        if not isinstance(topic, str) or not topic:
            raise MalformedRequest(f"record {i}: 'topic' must be a non-empty string")
        for name, number in (("partition", partition), ("offset", offset)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise MalformedRequest(f"record {i}: '{name}' must be a non-negative integer")
        records.append(
            InputRecord(
                key=_key_bytes(item.get("key"), i),
                value=_value_bytes(item.get("value")),
                topic=topic,
                partition=int(partition),  # type: ignore[arg-type]
                offset=int(offset),  # type: ignore[arg-type]
                timestamp_ms=parse_timestamp(item.get("timestamp")),
            )
        )
    return records


def trade_from_json(value: bytes) -> UserTrade:
    """A UserTrade from the connector's schemaless JSON of the Protobuf value (field names in any case)."""
    try:
        obj = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PoisonRecord(PoisonKind.UNDECODABLE, "value is neither Confluent-framed bytes nor JSON") from None
    if not isinstance(obj, dict):
        raise PoisonRecord(PoisonKind.UNDECODABLE, f"value is a JSON {type(obj).__name__}, not an object")
    fields = {str(k).lower(): v for k, v in obj.items()}
    trade = UserTrade()
    for name in _STRING_FIELDS:
        v = fields.get(name)
        if v is None:
            continue
        if not isinstance(v, str):
            raise PoisonRecord(PoisonKind.UNDECODABLE, f"value field {name.upper()} is not a string")
        setattr(trade, name, v)
    for name in _INT_FIELDS:
        v = fields.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not _INT32[0] <= v <= _INT32[1]:
            raise PoisonRecord(PoisonKind.UNDECODABLE, f"value field {name.upper()} is not an int32")
        setattr(trade, name, v)
    return trade


def sink_decoder(framed: Callable[[bytes | None], UserTrade]) -> Callable[[bytes | None], UserTrade]:
    """JSON struct values are read as JSON; anything else (base64 bytes) as Confluent-framed Protobuf."""

    def decode(value: bytes | None) -> UserTrade:
        if value and value[:1] == b"{":
            return trade_from_json(value)
        return framed(value)

    return decode


def results_json(result: BatchResult) -> list[dict[str, Any]]:
    return [
        {"coordinates": r.coordinates, "outcome": r.outcome, "disposition": r.disposition, "reason": r.reason}
        for r in result.results
    ]


def handle(body: bytes, processor: SettlementProcessor) -> tuple[int, Any]:
    """(HTTP status, JSON payload) for one connector request."""
    try:
        records = parse_batch(body)
    except MalformedRequest as exc:
        return 400, {"error": str(exc)}
    try:
        result = processor.process(records, decode=sink_decoder(processor.decoder.for_batch()))
    except (DeliveryError, TransientError) as exc:
        return 503, {"error": f"not settled, retry the batch: {exc}"}
    return 200, results_json(result)
