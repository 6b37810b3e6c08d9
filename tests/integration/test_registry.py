"""Writer schemas in every form a registry returns, and a registry that fails the way networks fail.

ksqlDB registers `.proto` text; confluent-kafka registers a base64 descriptor; references and nested
message-index paths occur in real schemas. A registry that hangs or a gateway that answers 404 must fail
the batch for retry (nothing produced), never dead-letter good records, and the next batch must settle.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient

import function_app
from localrun.experiments import ksql_schema
from settlement.core.errors import TransientError
from settlement.schemas.user_trade_pb2 import UserTrade
from tests.integration.pipeline import Pipeline, as_events, decode_settlements
from tests.kafka_helpers import drain, produce, unique_name

pytestmark = pytest.mark.integration

TRADE = UserTrade(regionid="Region_1", quantity=100, symbol="ZVV", price=50, account="A1", side="BUY")


def _settle_values(pipeline: Pipeline, values: list[bytes]) -> None:
    produce(pipeline.bootstrap, pipeline.source, [(b"User_1", v) for v in values], partition=0)
    function_app.settle_user_trades(as_events(drain(pipeline.bootstrap, pipeline.source, len(values))))


@pytest.mark.parametrize(
    ("full_name", "optional"),
    [("tradesettlement.v1.UserTrade", True), (None, True), ("tradesettlement.v1.UserTrade", False)],
)
def test_text_schemas_as_ksqldb_registers_them_settle(
    pipeline: Pipeline, full_name: str | None, optional: bool
) -> None:
    client = SchemaRegistryClient({"url": pipeline.registry_url})
    schema_id = ksql_schema.register(
        client, unique_name("ksql") + "-value", ksql_schema.schema_text(full_name, optional)
    )
    assert "{" in (SchemaRegistryClient({"url": pipeline.registry_url}).get_schema(schema_id).schema_str or "")
    _settle_values(pipeline, [ksql_schema.encode(schema_id, TRADE)])
    [settlement] = decode_settlements(pipeline, drain(pipeline.bootstrap, pipeline.settlements, 1))
    assert (settlement.user, settlement.symbol, settlement.amount, settlement.disposition) == (
        "User_1",
        "ZVV",
        5000.0,
        "Completed",
    )
    assert drain(pipeline.bootstrap, pipeline.dlq, 0, timeout_s=1) == []


def test_the_base64_descriptor_form_settles_too(pipeline: Pipeline) -> None:
    ser, ctx = pipeline.descriptor_serializer()
    _settle_values(pipeline, [ser(TRADE, ctx)])
    assert len(drain(pipeline.bootstrap, pipeline.settlements, 1)) == 1


def test_text_with_references_and_a_nested_message_index_path(pipeline: Pipeline) -> None:
    client = SchemaRegistryClient({"url": pipeline.registry_url})
    common_subject = unique_name("common") + "-value"
    client.register_schema(
        common_subject,
        Schema('syntax = "proto3";\npackage common.v1;\nmessage Money { int64 units = 1; }\n', "PROTOBUF"),
    )
    version = client.get_latest_version(common_subject).version
    text = (
        'syntax = "proto3";\npackage tradesettlement.v1;\nimport "common/money.proto";\n'
        "message Other { bytes blob = 1; }\n"
        "message Envelope {\n  message UserTrade {\n    optional string REGIONID = 1;\n    int32 QUANTITY = 2;\n"
        "    string SYMBOL = 3;\n    int32 PRICE = 4;\n    common.v1.Money NOTIONAL = 9;\n  }\n}\n"
    )
    refs = [SchemaReference("common/money.proto", common_subject, version)]
    schema_id = client.register_schema(unique_name("refs") + "-value", Schema(text, "PROTOBUF", refs))
    # message-index path [1, 0] (Envelope.UserTrade): zigzag count 2, then 1 and 0
    framed = b"\x00" + schema_id.to_bytes(4, "big") + b"\x04\x02\x00" + TRADE.SerializeToString()
    # path [0] names `Other`, whose field 1 is bytes where UserTrade has a string: not wire-compatible
    other = ksql_schema.encode(schema_id, TRADE)
    _settle_values(pipeline, [framed, other])
    assert len(drain(pipeline.bootstrap, pipeline.settlements, 1)) == 1
    [dead] = drain(pipeline.bootstrap, pipeline.dlq, 1)
    assert dict(dead.headers() or [])["dlq.reason"] == b"wrong-schema-type"


class _Registry(ThreadingHTTPServer):
    """A registry endpoint in front of the real one: proxies, answers a gateway's HTML 404, or hangs."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.split("/apis/")[0]
        self.mode = "proxy"
        self.release = threading.Event()
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/apis/ccompat/v7"


class _Handler(BaseHTTPRequestHandler):
    server: _Registry

    def log_message(self, *args: object) -> None:
        pass

    def _serve(self) -> None:
        self.server.requests += 1
        if self.server.mode == "hang":
            self.server.release.wait(60)
            return
        if self.server.mode == "html404":
            body = b"<html><body><h1>404 Not Found</h1>nginx</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        request = urllib.request.Request(  # noqa: S310 - the local registry
            self.server.upstream + self.path, data=data, method=self.command, headers=dict(self.headers)
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
                status, body, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            status, body, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve


@pytest.fixture
def front(pipeline: Pipeline, monkeypatch) -> Iterator[_Registry]:
    server = _Registry(pipeline.registry_url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", server.url)
    monkeypatch.setenv("SETTLEMENT_DELIVERY_TIMEOUT_SECONDS", "4")
    function_app.root.reset()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _ksql_events(pipeline: Pipeline, count: int) -> list:
    """`count` trades written as ksqlDB writes them, consumed back as the function receives them."""
    ser, ctx = pipeline.serializer()
    produce(pipeline.bootstrap, pipeline.source, [(b"User_1", ser(TRADE, ctx))] * count)
    return as_events(drain(pipeline.bootstrap, pipeline.source, count))


def test_a_hanging_registry_fails_the_batch_within_its_deadline_and_produces_nothing(
    pipeline: Pipeline, front: _Registry
) -> None:
    events = _ksql_events(pipeline, 3)
    front.mode = "hang"
    started = time.monotonic()
    with pytest.raises(TransientError, match="unreachable"):
        function_app.settle_user_trades(events)
    assert time.monotonic() - started < 4 + 1.0
    assert drain(pipeline.bootstrap, pipeline.settlements, 0, timeout_s=1) == []
    assert drain(pipeline.bootstrap, pipeline.dlq, 0, timeout_s=1) == []


def test_a_gateway_404_is_retried_not_dead_lettered_and_the_next_batch_settles(
    pipeline: Pipeline, front: _Registry
) -> None:
    events = _ksql_events(pipeline, 3)
    front.mode = "html404"
    with pytest.raises(TransientError, match="HTTP 404"):
        function_app.settle_user_trades(events)
    assert drain(pipeline.bootstrap, pipeline.dlq, 0, timeout_s=1) == []
    front.mode = "proxy"  # the registry is back: the retried batch settles, nothing was remembered as poison
    function_app.settle_user_trades(events)
    assert len(drain(pipeline.bootstrap, pipeline.settlements, 3)) == 3
    assert drain(pipeline.bootstrap, pipeline.dlq, 0, timeout_s=1) == []


def test_an_unknown_id_is_asked_once_per_batch_and_again_by_the_next(pipeline: Pipeline, front: _Registry) -> None:
    schema_id = 2_000_000_000  # far above any id the local registry hands out
    values = [ksql_schema.encode(schema_id, TRADE) for _ in range(5)]
    produce(pipeline.bootstrap, pipeline.source, [(b"User_1", v) for v in values])
    events = as_events(drain(pipeline.bootstrap, pipeline.source, 5))
    function_app.settle_user_trades(events)  # builds the service (the settlement schema is registered here)
    first = front.requests
    function_app.settle_user_trades(events)
    assert front.requests - first == 1
    dead = drain(pipeline.bootstrap, pipeline.dlq, 10)
    assert [dict(m.headers() or [])["dlq.reason"] for m in dead] == [b"unknown-schema-id"] * 10
