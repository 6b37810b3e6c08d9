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
import logging
from typing import Any, NamedTuple

from settlement.core.errors import RetryBatch
from settlement.core.plan import BatchResult
from settlement.core.records import InputRecord
from settlement.delivery.batch import SettlementProcessor

log = logging.getLogger("settlement.sink")


class MalformedRequest(ValueError):
    """The request as a whole is not the connector's format: answered 400, nothing is produced."""


class TooLarge(ValueError):
    """The request is over a configured size or record-count limit: answered 413, nothing is produced."""


_WS = " \t\n\r"
_INT64_MAX = 2**63 - 1


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _expect(text: str, i: int, chars: str, what: str) -> int:
    i = _skip(text, i)
    if i >= len(text) or text[i] not in chars:
        raise MalformedRequest(f"body is not a JSON array of records ({what} expected at character {i})")
    return i


def _value(text: str, i: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, i)
    except RecursionError:
        raise MalformedRequest(f"body nests too deeply (at character {i})") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers past Python's digit limit
        raise MalformedRequest(f"body is not JSON ({str(exc).split(':')[0]}, at character {i})") from None


def _record(text: str, i: int, index: int) -> tuple[dict[str, Any], dict[str, str], int]:
    """One record object from `text[i]`: its fields, and each field's raw JSON text as sent."""
    if text[i] != "{":
        _value(text, i)  # a JSON error in it is reported as such
        raise MalformedRequest(f"record {index}: must be a JSON object")
    fields: dict[str, Any] = {}
    raw: dict[str, str] = {}
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "}":
        return fields, raw, i + 1
    while True:
        i = _expect(text, i, '"', "a field name")
        name, i = _value(text, i)
        i = _expect(text, i, ":", "':'") + 1
        start = _skip(text, i)
        fields[name], i = _value(text, start)
        raw[name] = text[start:i]
        i = _expect(text, i, ",}", "',' or '}'")
        if text[i] == "}":
            return fields, raw, i + 1
        i += 1


def _records(text: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """The body's records, read with the standard JSON decoder one value at a time so that each record's
    value keeps its exact text (a dead letter carries what the connector sent, not a re-serialisation)."""
    i = _skip(text, 0)
    if i >= len(text) or text[i] != "[":
        _value(text, i)  # a JSON error names its position; valid JSON that is not an array falls through
        raise MalformedRequest("body must be a JSON array of records")
    out: list[tuple[dict[str, Any], dict[str, str]]] = []
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "]":
        i += 1
    else:
        while True:
            i = _skip(text, i)
            if i >= len(text):
                raise MalformedRequest("body is not JSON (the array is not closed)")
            fields, raw, i = _record(text, i, len(out))
            out.append((fields, raw))
            i = _expect(text, i, ",]", "',' or ']'")
            if text[i] == "]":
                i += 1
                break
            i += 1
    if _skip(text, i) != len(text):
        raise MalformedRequest(f"body has data after the array (at character {_skip(text, i)})")
    return out


def _text(value: str, index: int, name: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedRequest(f"record {index}: '{name}' is not valid Unicode (a lone surrogate)") from None
    return value


def _key_bytes(key: Any, index: int) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, str):
        return _text(key, index, "key").encode("utf-8")
    if isinstance(key, bool) or not isinstance(key, int | float):
        raise MalformedRequest(f"record {index}: key must be a string, a number or null")
    return str(key).encode("utf-8")


def _value_bytes(value: Any, raw: str | None) -> bytes | None:
    """Struct → its JSON exactly as sent (decoded by `trade_from_json`); base64 string → the raw (framed)
    bytes; any other string → its UTF-8 text."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value.encode("utf-8", errors="surrogatepass")
    return (raw or json.dumps(value)).encode("utf-8", errors="surrogatepass")


def _bounded_int(value: Any, index: int, name: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise MalformedRequest(f"record {index}: '{name}' must be a non-negative integer")
    return value


def parse_batch(body: bytes, max_records: int | None = None) -> list[InputRecord]:
    """Validate the request shape; raise `MalformedRequest` naming the first problem (or `TooLarge`)."""
    try:
        text = (body or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("body is not UTF-8 text") from None
    items = _records(text)
    if max_records is not None and len(items) > max_records:
        raise TooLarge(f"{len(items)} records in one request, over the limit of {max_records}")
    records = []
    for i, (item, raw) in enumerate(items):
        topic = item.get("topic")
        if not isinstance(topic, str) or not topic:
            raise MalformedRequest(f"record {i}: 'topic' must be a non-empty string")
        partition = _bounded_int(item.get("partition"), i, "partition", 2**31 - 1)
        offset = _bounded_int(item.get("offset"), i, "offset", _INT64_MAX)
        stamp = item.get("timestamp")
        if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int) or abs(stamp) > _INT64_MAX):
            raise MalformedRequest(f"record {i}: 'timestamp' must be epoch milliseconds (an integer) or null")
        records.append(
            InputRecord(
                key=_key_bytes(item.get("key"), i),
                value=_value_bytes(item.get("value"), raw.get("value")),
                topic=_text(topic, i, "topic"),
                partition=partition,
                offset=offset,
                timestamp_ms=stamp,
            )
        )
    return records


def results_json(result: BatchResult) -> list[dict[str, Any]]:
    return [
        {"coordinates": r.coordinates, "outcome": r.outcome, "disposition": r.disposition, "reason": r.reason}
        for r in result.results
    ]


class HttpLimits(NamedTuple):
    """A connector request's limits (SETTLEMENT_HTTP_MAX_BODY_BYTES, SETTLEMENT_HTTP_MAX_RECORDS)."""

    max_body_bytes: int
    max_records: int


def handle(body: bytes, processor: SettlementProcessor, limits: HttpLimits) -> tuple[int, Any]:
    """(HTTP status, JSON payload) for one connector request. Never 500: a bad request is 400, an oversize one
    413 (over `limits`, checked before anything is parsed or settled), and anything that failing the batch can
    fix (delivery, registry, configuration) 503, which the connector retries."""
    max_body_bytes, max_records = limits
    if len(body or b"") > max_body_bytes:
        return 413, {"error": f"body is {len(body)} bytes, over the limit of {max_body_bytes}"}
    try:
        records = parse_batch(body, max_records)
    except TooLarge as exc:
        return 413, {"error": str(exc)}
    except MalformedRequest as exc:
        return 400, {"error": str(exc)}
    try:
        result = processor.process(records, connector=True)
    except RetryBatch as exc:
        return 503, {"error": f"not settled, retry the batch: {exc}"}
    except Exception as exc:
        log.exception("sink batch failed")
        return 503, {"error": f"not settled, retry the batch: {type(exc).__name__}: {exc}"}
    return 200, results_json(result)
