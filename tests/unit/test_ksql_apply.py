"""The apply tool against a local HTTP server that records requests and answers like ksqlDB."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scripts.ksql_apply import main

SECRET = "fk-Xy7Qp2Lm9Rt4Vb6N"
ENV = {
    "FUNCTION_URL": "https://app.azurewebsites.net/api/settle",
    "FUNCTION_KEY": SECRET,
    "KAFKA_API_KEY": "AKEY",
    "KAFKA_API_SECRET": SECRET + "-kafka",
    "KSQLDB_API_KEY": "ksql-key",
    "KSQLDB_API_SECRET": "ksql-secret",
    "CONFLUENT_CLOUD_API_KEY": "CLOUDKEY",
    "CONFLUENT_CLOUD_API_SECRET": SECRET + "-cloud",
    "SCHEMA_REGISTRY_URL": "http://registry:8081",
    "KAFKA_BOOTSTRAP_SERVERS": "broker:9092",
}
NO_TOPICS = ["--skip-topics"]
CONNECTOR = ["--entry", "connector"]


class FakeKsql:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_on: str | None = None  # substring of a statement to answer with an error
        self.fail_status = 400

    def answer(self, body: dict, headers: dict[str, str]) -> tuple[int, object]:
        auth = headers.get("Authorization")
        self.requests.append({"body": body, "auth": auth, "headers": headers})
        if self.fail_on and self.fail_on in body["ksql"]:
            if self.fail_status == 401:
                return 401, {"@type": "generic_error", "error_code": 40100, "message": "Unauthorized"}
            return 400, {
                "@type": "statement_error",
                "error_code": 40001,
                "message": f"Invalid config value {SECRET}-kafka for kafka.api.secret",
                "statementText": body["ksql"],
                "entities": [],
            }
        return 200, [
            {
                "@type": "currentStatus",
                "statementText": body["ksql"],
                "commandId": "stream/X/create",
                "commandStatus": {"status": "SUCCESS", "message": "Stream created"},
                "commandSequenceNumber": len(self.requests),
                "warnings": [],
            }
        ]


@pytest.fixture
def server() -> Iterator[tuple[str, FakeKsql]]:
    fake = FakeKsql()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert self.path == "/ksql"
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, payload = fake.answer(body, dict(self.headers))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.ksql.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", fake
    httpd.shutdown()


def test_applies_every_statement_in_order_with_basic_auth(server, capsys) -> None:
    url, fake = server
    assert main(["--server", url, *NO_TOPICS, *CONNECTOR], env=ENV) == 0
    sent = [r["body"]["ksql"] for r in fake.requests]
    assert [s.split("(")[0].split(" WITH")[0].strip() for s in sent] == [
        "CREATE STREAM IF NOT EXISTS STOCKTRADE",
        "CREATE TABLE IF NOT EXISTS USERS",
        "CREATE STREAM IF NOT EXISTS USER_TRADES",
        "CREATE SINK CONNECTOR IF NOT EXISTS USER_TRADES_AZURE_FUNCTIONS_SINK",
        "CREATE STREAM IF NOT EXISTS TRADE_SETTLEMENTS",
        "CREATE TABLE IF NOT EXISTS SETTLEMENTS_BY_SYMBOL_DISPOSITION",
        "CREATE TABLE IF NOT EXISTS EXPOSURE_BY_SYMBOL_HOURLY",
    ]
    assert all("${" not in s for s in sent)
    # Persistent queries under exactly_once_v2: Kafka Streams reads the ledger's committed settlements only.
    assert {r["body"]["streamsProperties"]["processing.guarantee"] for r in fake.requests} == {"exactly_once_v2"}
    assert f"'function.key' = '{SECRET}'" in sent[3]  # the server does get the real value
    assert {r["auth"] for r in fake.requests} == {"Basic " + base64.b64encode(b"ksql-key:ksql-secret").decode()}
    out = capsys.readouterr().out
    assert out.count("-> SUCCESS: Stream created") == 7
    assert SECRET not in out
    # Confluent Cloud's ksqlDB manages connectors only with the Cloud API key headers: on that statement alone.
    with_cloud_key = [
        r["body"]["ksql"].split("(")[0].strip() for r in fake.requests if "X-Confluent-Api-Key" in r["headers"]
    ]
    assert with_cloud_key == ["CREATE SINK CONNECTOR IF NOT EXISTS USER_TRADES_AZURE_FUNCTIONS_SINK WITH"]
    connector = fake.requests[3]["headers"]
    assert (connector["X-Confluent-Api-Key"], connector["X-Confluent-Api-Secret"]) == ("CLOUDKEY", SECRET + "-cloud")


def test_self_managed_mode_applies_the_self_managed_connector_without_cloud_headers(server, capsys) -> None:
    url, fake = server
    env = {k: v for k, v in ENV.items() if not k.startswith("CONFLUENT_CLOUD")}
    assert main(["--server", url, "--mode", "self-managed", *NO_TOPICS, *CONNECTOR], env=env) == 0
    connector = fake.requests[3]["body"]["ksql"]
    assert "'connector.class' = 'io.confluent.connect.http.AzureFunctionsSinkConnector'" in connector
    assert "'value.converter.schema.registry.url' = 'http://registry:8081'" in connector
    assert not any("X-Confluent-Api-Key" in r["headers"] for r in fake.requests)


def test_the_default_trigger_entry_leaves_the_connector_out_so_each_trade_has_one_path(server, capsys) -> None:
    url, fake = server
    env = {k: v for k, v in ENV.items() if not k.startswith(("CONFLUENT_CLOUD", "FUNCTION_"))}
    assert main(["--server", url, *NO_TOPICS], env=env) == 0  # no function URL, key or Cloud key needed
    sent = [r["body"]["ksql"] for r in fake.requests]
    assert len(sent) == 6 and not any("CONNECTOR" in s for s in sent)
    assert "skipped: a connector statement, and --entry is trigger" in capsys.readouterr().out
    assert main(["--server", url, *NO_TOPICS], env={**ENV, "SETTLEMENT_ENTRY": "connector"}) == 0
    assert any("CREATE SINK CONNECTOR" in r["body"]["ksql"] for r in fake.requests[6:])


def test_cloud_mode_without_the_cloud_api_key_says_what_to_set(server, capsys) -> None:
    url, fake = server
    env = {k: v for k, v in ENV.items() if not k.startswith("CONFLUENT_CLOUD")}
    assert main(["--server", url, *NO_TOPICS, *CONNECTOR], env=env) == 2
    assert fake.requests == []
    assert "CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET" in capsys.readouterr().err


def test_stops_at_the_first_error_with_the_servers_message_masked(server, capsys) -> None:
    url, fake = server
    fake.fail_on = "CREATE SINK CONNECTOR"
    assert main(["--server", url, *NO_TOPICS, *CONNECTOR], env=ENV) == 1
    assert len(fake.requests) == 4  # nothing after the failing statement
    out = capsys.readouterr().out
    assert "[03-sink-connector.sql #1] CREATE SINK CONNECTOR" in out
    assert "FAILED: HTTP 400: Invalid config value ****" in out
    assert SECRET not in out


def test_auth_error_says_which_settings_to_check(server, capsys) -> None:
    url, fake = server
    fake.fail_on, fake.fail_status = "STOCKTRADE", 401
    assert main(["--server", url, *NO_TOPICS], env=ENV) == 1
    assert len(fake.requests) == 1
    assert "authentication failed (HTTP 401: Unauthorized); check KSQLDB_API_KEY and KSQLDB_API_SECRET" in (
        capsys.readouterr().out
    )


def test_dry_run_prints_resolved_statements_with_secrets_masked(capsys) -> None:
    assert main(["--dry-run", "--var", "USER_TRADES_PARTITIONS=12", *CONNECTOR], env=ENV) == 0
    out = capsys.readouterr().out
    assert "'function.key' = '****'" in out and "'kafka.api.secret' = '****'" in out
    assert "'function.url' = 'https://app.azurewebsites.net/api/settle'" in out
    assert "X-Confluent-API-Key: ****" in out
    assert "PARTITIONS = 12" in out and "${" not in out
    assert SECRET not in out


def test_secret_on_the_command_line_is_refused(capsys) -> None:
    assert main(["--dry-run", "--var", f"FUNCTION_KEY={SECRET}"], env=ENV) == 2
    assert "pass it through the environment" in capsys.readouterr().err


def test_unreachable_server_is_one_clear_line(capsys, tmp_path: Path) -> None:
    sql = tmp_path / "one.sql"
    sql.write_text("CREATE STREAM IF NOT EXISTS X (A INT) WITH (KAFKA_TOPIC='x', VALUE_FORMAT='JSON');")
    assert main(["--server", "http://127.0.0.1:9", *NO_TOPICS, str(sql)], env={}) == 1
    assert "cannot reach ksqlDB at http://127.0.0.1:9/ksql" in capsys.readouterr().out
