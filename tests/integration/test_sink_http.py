"""The sink-connector HTTP function with real `func.HttpRequest` objects against the real broker."""

from __future__ import annotations

import base64
import json

import azure.functions as func
import pytest

import function_app
from settlement.core import deadletter
from tests.integration.pipeline import Pipeline, decode_settlements
from tests.kafka_helpers import drain, unique_name

pytestmark = pytest.mark.integration
TS = 1_795_607_193_123


def post(records: object) -> func.HttpResponse:
    body = records if isinstance(records, bytes) else json.dumps(records).encode()
    req = func.HttpRequest(
        method="POST",
        url="http://localhost/api/settle",
        body=body,
        headers={"Content-Type": "application/json"},
        params={"code": "function-key"},
    )
    return function_app.settle_sink_batch(req)


def record(p: Pipeline, offset: int, key: object, value: object) -> dict:
    return {"key": key, "value": value, "topic": p.source, "partition": 2, "offset": offset, "timestamp": TS}


def trade(**fields: object) -> dict:
    """The connector's schemaless JSON of a ksqlDB-written UserTrade (upper-case column names)."""
    base = {"REGIONID": "Region_1", "QUANTITY": 10, "SYMBOL": "ZVV", "PRICE": 20, "ACCOUNT": "A1", "SIDE": "BUY"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def test_a_good_batch_answers_aligned_results_and_settles(pipeline: Pipeline) -> None:
    records = [
        record(pipeline, 10, "User_1", trade()),
        record(pipeline, 11, "User_2", trade(QUANTITY=2000, PRICE=100)),
        record(pipeline, 12, "User_3", trade(REGIONID=None)),
        record(pipeline, 13, None, trade()),
        record(pipeline, 14, "User_4", trade(SYMBOL="ZWATCH")),
    ]
    resp = post(records)
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    results = json.loads(resp.get_body())
    assert [(r["coordinates"], r["outcome"], r["disposition"]) for r in results] == [
        (f"{pipeline.source}/2/10", "settled", "Completed"),
        (f"{pipeline.source}/2/11", "settled", "Pending"),
        (f"{pipeline.source}/2/12", "settled", "Rejected"),
        (f"{pipeline.source}/2/13", "settled", "Rejected"),
        (f"{pipeline.source}/2/14", "settled", "SEC Flagged"),
    ]
    out = decode_settlements(pipeline, drain(pipeline.bootstrap, pipeline.settlements, 5))
    assert [(s.user, s.amount, s.timestamp, s.source_offset) for s in out] == [
        ("User_1", 200.0, TS, 10),
        ("User_2", 200_000.0, TS, 11),
        ("User_3", 200.0, TS, 12),
        ("", 200.0, TS, 13),
        ("User_4", 200.0, TS, 14),
    ]


def test_a_malformed_body_is_400_and_produces_nothing(pipeline: Pipeline) -> None:
    # One case through the real function and broker; the body parser's table is tests/unit/test_sink_body.py.
    resp = post(b"[" * 200_000)
    assert resp.status_code == 400
    assert json.loads(resp.get_body()) == {"error": "body nests too deeply (at character 1)"}
    assert drain(pipeline.bootstrap, pipeline.settlements, 0, timeout_s=1) == []
    assert drain(pipeline.bootstrap, pipeline.dlq, 0, timeout_s=1) == []


def test_a_mixed_poison_batch_dead_letters_and_never_500s(pipeline: Pipeline) -> None:
    ser, ctx = pipeline.serializer()
    from settlement.schemas.user_trade_pb2 import UserTrade

    framed = ser(UserTrade(regionid="Region_9", quantity=5, symbol="ZBZX", price=9, account="B", side="SELL"), ctx)
    records = [
        record(pipeline, 0, "User_1", trade()),
        record(pipeline, 1, "User_1", trade(QUANTITY="ten")),
        record(pipeline, 2, "User_1", None),
        record(pipeline, 3, "User_1", [1, 2]),
        record(pipeline, 4, "User_1", "bm90IGZyYW1lZA=="),  # base64 of unframed bytes
        record(pipeline, 5, "User_1", base64.b64encode(framed).decode()),  # bytes: framed Protobuf
        {**record(pipeline, 6, "User_1", trade()), "timestamp": None},
        record(pipeline, 7, "User_1", trade(PRICE=2**31)),
    ]
    resp = post(records)
    assert resp.status_code == 200
    results = json.loads(resp.get_body())
    assert [(r["outcome"], r["reason"]) for r in results] == [
        ("settled", "Within same day limit"),
        ("dead-lettered", "undecodable-payload"),
        ("dead-lettered", "empty-value"),
        ("dead-lettered", "bad-magic-byte"),
        ("dead-lettered", "bad-magic-byte"),
        ("settled", "Within same day limit"),
        ("dead-lettered", "no-timestamp"),
        ("dead-lettered", "undecodable-payload"),
    ]
    settled = drain(pipeline.bootstrap, pipeline.settlements, 2)
    dead = drain(pipeline.bootstrap, pipeline.dlq, 6)
    assert len(settled) + len(dead) == len(records)
    assert [s.symbol for s in decode_settlements(pipeline, settled)] == ["ZVV", "ZBZX"]
    offsets = [int(dict(m.headers())[deadletter.SOURCE_OFFSET]) for m in dead]
    assert offsets == [1, 2, 3, 4, 6, 7]
    assert json.loads(dead[0].value()) == trade(QUANTITY="ten")  # the record as the connector sent it


@pytest.mark.parametrize(
    ("setting", "value", "records"),
    [("SETTLEMENT_HTTP_MAX_RECORDS", "3", 4), ("SETTLEMENT_HTTP_MAX_BODY_BYTES", "1024", 20)],
)
def test_a_request_over_a_limit_is_413_and_produces_nothing(
    pipeline: Pipeline, monkeypatch, setting: str, value: str, records: int
) -> None:
    monkeypatch.setenv(setting, value)
    function_app.root.reset()
    resp = post([record(pipeline, i, "User_1", trade()) for i in range(records)])
    assert resp.status_code == 413, resp.get_body()
    assert "over the limit" in json.loads(resp.get_body())["error"]
    assert drain(pipeline.bootstrap, pipeline.settlements, 0, timeout_s=1) == []


def test_a_dead_letter_carries_the_value_exactly_as_the_connector_sent_it(pipeline: Pipeline) -> None:
    value = '{ "SYMBOL" : "Zürich\\u00e9",\n  "QUANTITY": "ten", "PRICE": 1.50e1 }'
    body = (
        '[{"key": "User_1", "value": ' + value + ', "topic": "' + pipeline.source + '", "partition": 0, '
        '"offset": 7, "timestamp": 1795607193123}]'
    ).encode()
    resp = post(body)
    assert resp.status_code == 200
    assert json.loads(resp.get_body())[0]["reason"] == "undecodable-payload"
    [dead] = drain(pipeline.bootstrap, pipeline.dlq, 1)
    assert dead.value() == value.encode()


def test_a_delivery_failure_answers_503_so_the_connector_retries(pipeline: Pipeline, monkeypatch) -> None:
    monkeypatch.setenv("SETTLEMENTS_TOPIC", unique_name("missing"))
    monkeypatch.setenv("SETTLEMENT_DELIVERY_TIMEOUT_SECONDS", "2")
    function_app.root.reset()
    resp = post([record(pipeline, 0, "User_1", trade())])
    assert resp.status_code == 503
    assert json.loads(resp.get_body())["error"].startswith("not settled, retry the batch")
    function_app.root.reset(producer_timeout_s=0)
