"""The sink connector's request body, parsed without I/O: every malformed body is a 400 naming the problem.

(The same answers through the real HTTP function and broker: tests/integration/test_sink_http.py.)
"""

from __future__ import annotations

import json

import pytest

from settlement.core.errors import PoisonRecord
from settlement.core.poison import PoisonKind
from settlement.runtime import sink
from settlement.serde.json_value import trade_from_json

LIMITS = sink.HttpLimits(32 * 1024 * 1024, 10_000)  # checked before the processor is asked for anything


GOOD_FIELDS = b'"topic": "t", "partition": 0, "offset": 1'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body is not JSON (Expecting value, at character 0)"),
        (b'["\xff"]', "body is not UTF-8 text"),
        (b'{"key": "a"}', "body must be a JSON array of records"),
        (b'[{"key": "a", "value": {}, "partition": 0, "offset": 1}]', "record 0: 'topic' must be a non-empty string"),
        (
            b'[{"key": "a", "value": {}, "topic": "t", "partition": "0", "offset": 1}]',
            "record 0: 'partition' must be a non-negative integer",
        ),
        (b"[1]", "record 0: must be a JSON object"),
        # hostile bodies: each once answered 500
        (b"[" * 200_000, "body nests too deeply (at character 1)"),
        (b'[{"value": ' + b"[" * 200_000 + b"]}]", "body nests too deeply (at character 11)"),
        (b'[{"timestamp": NaN, ' + GOOD_FIELDS + b"}]", "body is not JSON (NaN is not a JSON number, at character 15)"),
        (
            b'[{"timestamp": -Infinity, ' + GOOD_FIELDS + b"}]",
            "body is not JSON (-Infinity is not a JSON number, at character 15)",
        ),
        (
            '[{"timestamp": "²", '.encode() + GOOD_FIELDS + b"}]",
            "record 0: 'timestamp' must be epoch milliseconds (an integer) or null",
        ),
        (
            b'[{"timestamp": ' + b"9" * 4000 + b", " + GOOD_FIELDS + b"}]",
            "record 0: 'timestamp' must be epoch milliseconds (an integer) or null",
        ),
        (
            b'[{"timestamp": ' + b"9" * 5000 + b", " + GOOD_FIELDS + b"}]",
            "body is not JSON (Exceeds the limit (4300 digits) for integer string conversion, at character 15)",
        ),
        (b'[{"key": "\\ud800", ' + GOOD_FIELDS + b"}]", "record 0: 'key' is not valid Unicode (a lone surrogate)"),
        (
            b'[{"key": "a", "value": {}, "topic": "\\udfff", "partition": 0, "offset": 1}]',
            "record 0: 'topic' is not valid Unicode (a lone surrogate)",
        ),
        (
            b'[{"offset": 1, "partition": 4294967296, "topic": "t"}]',
            "record 0: 'partition' must be a non-negative integer",
        ),
        (b'[{"key": "a", ' + GOOD_FIELDS + b"}] trailing", "body has data after the array (at character 58)"),
        (
            b'[{"key": "a", ' + GOOD_FIELDS + b"}",
            "body is not a JSON array of records (',' or ']' expected at character 56)",
        ),
    ],
)
def test_a_malformed_body_is_400_naming_the_problem(body: bytes, message: str) -> None:
    assert sink.handle(body, None, LIMITS) == (400, {"error": message})  # type: ignore[arg-type]


def test_a_body_over_a_limit_is_413_before_it_is_settled() -> None:
    small, few = sink.HttpLimits(64, 10_000), sink.HttpLimits(1 << 20, 2)
    status, payload = sink.handle(b"[" + b" " * 100 + b"]", None, small)  # type: ignore[arg-type]
    assert (status, payload["error"]) == (413, "body is 102 bytes, over the limit of 64")
    body = json.dumps([{"key": "a", "value": {}, "topic": "t", "partition": 0, "offset": i} for i in range(3)])
    status, payload = sink.handle(body.encode(), None, few)  # type: ignore[arg-type]
    assert status == 413 and "over the limit of 2" in payload["error"]


def test_good_records_parse_with_their_coordinates_and_values() -> None:
    body = json.dumps(
        [
            {"key": "User_1", "value": {"SYMBOL": "ZVV"}, "topic": "t", "partition": 2, "offset": 7, "timestamp": 5},
            {"key": None, "value": "AAAAAAEAAA==", "topic": "t", "partition": 0, "offset": 8, "timestamp": None},
        ]
    ).encode()
    first, second = sink.parse_batch(body, 10)
    assert (first.key, first.topic, first.partition, first.offset, first.timestamp_ms) == (b"User_1", "t", 2, 7, 5)
    assert json.loads(first.value or b"") == {"SYMBOL": "ZVV"}
    assert (second.key, second.value, second.timestamp_ms) == (None, b"\x00\x00\x00\x00\x01\x00\x00", None)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (b'{"SYMBOL": 5}', "value field SYMBOL is not a string"),
        (b'{"PRICE": 2147483648}', "value field PRICE is not an int32"),
        (b'{"QUANTITY": true}', "value field QUANTITY is not an int32"),
        (b"[1]", "value is a JSON list, not an object"),
        (b"{nope", "value is neither Confluent-framed bytes nor JSON"),
    ],
)
def test_a_json_value_that_is_not_a_user_trade_is_undecodable(value: bytes, detail: str) -> None:
    with pytest.raises(PoisonRecord) as caught:
        trade_from_json(value)
    assert caught.value.kind is PoisonKind.UNDECODABLE and caught.value.detail == detail


def test_json_values_are_read_by_name_in_any_case() -> None:
    trade = trade_from_json(b'{"symbol": "ZVV", "Price": 20, "QUANTITY": 3, "regionId": "R"}')
    assert (trade.symbol, trade.price, trade.quantity, trade.regionid) == ("ZVV", 20, 3, "R")
