"""The apply tool against a local HTTP server that records requests and answers like ksqlDB."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scripts.ksql_apply import MASK, main, redact

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


def applied(fake: FakeKsql) -> list[dict]:
    """The requests sent, without the DESCRIBE and EXPLAIN requests that check what exists."""
    return [r for r in fake.requests if not r["body"]["ksql"].startswith(("DESCRIBE", "EXPLAIN"))]


def created(fake: FakeKsql) -> list[str]:
    return [r["body"]["ksql"] for r in applied(fake)]


class FakeKsql:
    """Answers as ksqlDB's REST API does (confluentinc/ksql 8.5.0-0: ListSourceExecutor, ExplainExecutor,
    StructuredDataSource.canUpgradeTo), over a metastore of the objects it was asked to create. Columns: the
    declared ones of a plain CREATE; the aliases of a query's select list, all STRING (the fake does not type
    expressions, so a test retypes a column by hand)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_on: str | None = None  # substring of a statement to answer with an error
        self.fail_status = 400
        self.metastore: dict[str, list[dict]] = {}

    @staticmethod
    def _fields(statement: str) -> list[dict]:
        from scripts import ksql_changes

        target = ksql_changes.target_of(statement)
        if target is not None and target.query is None:
            return [
                {"name": n, "schema": {"type": t}, **({"type": "KEY"} if key else {})} for n, t, key in target.columns
            ]
        select = statement[statement.upper().index("SELECT") : statement.upper().index("FROM")]
        return [{"name": alias, "schema": {"type": "STRING"}} for alias in re.findall(r"\bAS (\w+)", select)]

    def _ksql(self, statement: str) -> tuple[int, object] | None:
        from scripts import ksql_changes

        error = {"@type": "statement_error", "error_code": 40001, "statementText": statement, "entities": []}
        if statement.startswith("DESCRIBE "):
            name = statement.removeprefix("DESCRIBE ").rstrip(";").strip("`")
            if name not in self.metastore:
                return 400, {**error, "message": f"Could not find STREAM/TABLE '{name}' in the Metastore"}
            body = {"name": name, "fields": self.metastore[name], "readQueries": [], "writeQueries": []}
            body["topic"] = re.search(r"KAFKA_TOPIC = '([^']+)'", self.created[name]).group(1)  # type: ignore[union-attr]
            return 200, [{"@type": "sourceDescription", "sourceDescription": body, "warnings": []}]
        if statement.startswith("EXPLAIN "):
            fields = self._fields(statement.removeprefix("EXPLAIN "))
            return 200, [{"@type": "queryDescription", "queryDescription": {"fields": fields}}]
        target = ksql_changes.target_of(statement)
        if target is None:
            return None
        if re.match(r"CREATE OR REPLACE", statement) and target.name in self.metastore:
            old, new = self.metastore[target.name], self._fields(statement)
            if "WINDOW" in statement:
                return 400, {
                    **error,
                    "error_code": 40000,
                    "message": "Upgrades not yet supported for StreamWindowedAggregate",
                }
            if new[: len(old)] != old:
                return 400, {
                    **error,
                    "error_code": 40000,
                    "message": f"Cannot upgrade data source: DataSource '{target.name}' has schema = ... which is not "
                    "upgradeable to ... (The following columns are changed, missing or reordered: [...])",
                }
        if "IF NOT EXISTS" not in statement or target.name not in self.metastore:
            self.metastore[target.name] = self._fields(statement)
            self.created[target.name] = statement
        return None

    def answer(self, body: dict, headers: dict[str, str]) -> tuple[int, object]:
        auth = headers.get("Authorization")
        self.requests.append({"body": body, "auth": auth, "headers": headers})
        if not hasattr(self, "created"):
            self.created: dict[str, str] = {}
        if not (self.fail_on and self.fail_on in body["ksql"]):
            early = self._ksql(body["ksql"])
            if early is not None:
                return early
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
    sent = created(fake)
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
    connector = applied(fake)[3]["headers"]
    assert (connector["X-Confluent-Api-Key"], connector["X-Confluent-Api-Secret"]) == ("CLOUDKEY", SECRET + "-cloud")


def test_self_managed_mode_applies_the_self_managed_connector_without_cloud_headers(server, capsys) -> None:
    url, fake = server
    env = {k: v for k, v in ENV.items() if not k.startswith("CONFLUENT_CLOUD")}
    assert main(["--server", url, "--mode", "self-managed", *NO_TOPICS, *CONNECTOR], env=env) == 0
    connector = created(fake)[3]
    assert "'connector.class' = 'io.confluent.connect.http.AzureFunctionsSinkConnector'" in connector
    assert "'value.converter.schema.registry.url' = 'http://registry:8081'" in connector
    assert not any("X-Confluent-Api-Key" in r["headers"] for r in fake.requests)


def test_the_default_trigger_entry_leaves_the_connector_out_so_each_trade_has_one_path(server, capsys) -> None:
    url, fake = server
    env = {k: v for k, v in ENV.items() if not k.startswith(("CONFLUENT_CLOUD", "FUNCTION_"))}
    assert main(["--server", url, *NO_TOPICS], env=env) == 0  # no function URL, key or Cloud key needed
    sent = created(fake)
    assert len(sent) == 6 and not any("CONNECTOR" in s for s in sent)
    assert "skipped: a connector statement, and --entry is trigger" in capsys.readouterr().out
    assert main(["--server", url, *NO_TOPICS], env={**ENV, "SETTLEMENT_ENTRY": "connector"}) == 0
    assert any("CREATE SINK CONNECTOR" in s for s in created(fake)[6:])


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
    assert len(applied(fake)) == 4  # nothing after the failing statement
    out = capsys.readouterr().out
    assert "[03-sink-connector.sql #1] CREATE SINK CONNECTOR" in out
    assert "FAILED: HTTP 400: Invalid config value ****" in out
    assert SECRET not in out


def test_a_missing_server_is_reported_before_missing_cloud_keys(capsys) -> None:
    assert main(["--entry", "connector", *NO_TOPICS], env={}) == 2
    err = capsys.readouterr().err
    assert err.strip() == "ksql_apply: no ksqlDB server: pass --server or set KSQLDB_ENDPOINT"


def test_a_missing_bootstrap_is_reported_before_missing_cloud_keys(capsys) -> None:
    assert main(["--entry", "connector", "--server", "http://127.0.0.1:9"], env={}) == 2
    assert "pass --bootstrap-servers or --skip-topics" in capsys.readouterr().err


def test_redact_masks_a_whole_secret_and_leaves_the_message_readable() -> None:
    message = f"HTTP 400: Invalid config value {SECRET}-kafka for kafka.api.secret ({SECRET})"
    values = {"FUNCTION_KEY": SECRET, "KAFKA_API_SECRET": SECRET + "-kafka", "FUNCTION_URL": SECRET + "x"}
    # longest first, so the longer value is not left as "****-kafka"; a non-secret name is never masked
    assert redact(message, values) == f"HTTP 400: Invalid config value {MASK} for kafka.api.secret ({MASK})"
    assert redact(f"url=https://u:{SECRET}@host/", {"KSQLDB_API_SECRET": SECRET}) == f"url=https://u:{MASK}@host/"


def test_redact_does_not_mangle_the_message_with_short_or_embedded_values() -> None:
    message = "authentication failed (HTTP 401: Unauthorized); check KSQLDB_API_KEY and KSQLDB_API_SECRET"
    # a one-letter secret, a secret that is a word of the message, one that is part of a longer word
    for value in ("a", "check", "KSQLDB", "authentic", "API_SECRET"):
        assert redact(message, {"KSQLDB_API_SECRET": value}) == message, value
    # a long secret that is a whole word of the message is masked there too: it cannot be told apart
    assert "(HTTP 401: ****)" in redact(message, {"KSQLDB_API_SECRET": "Unauthorized"})
    assert redact("a real one: sk-12345678.", {"X_TOKEN": "sk-12345678"}) == f"a real one: {MASK}."


def test_help_shows_each_default(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"], env={})
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--timeout SECONDS how long the topic step waits" in out and "(default: 20.0)" in out
    assert "(default: cloud)" in out and "(default: trigger)" in out and "(default: earliest)" in out
    assert "(default: None)" not in out and "(default: False)" not in out


def test_auth_error_says_which_settings_to_check(server, capsys) -> None:
    url, fake = server
    fake.fail_on, fake.fail_status = "STOCKTRADE", 401
    assert main(["--server", url, *NO_TOPICS], env=ENV) == 1
    assert len(applied(fake)) == 0 and len(fake.requests) == 1  # the first DESCRIBE is refused
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


def _edited(tmp_path: Path, name: str, old: str, new: str, base: Path | None = None) -> list[str]:
    """ksql/*.sql (or `base`'s copies) with one statement edited, as a user edits it; the paths, in order."""
    from scripts.ksql_apply import statement_files

    paths = []
    for path in statement_files("cloud", base) if base else statement_files("cloud"):
        text = path.read_text()
        if path.name == name:
            assert old in text
            text = text.replace(old, new)
        (tmp_path / path.name).write_text(text)
        paths.append(str(tmp_path / path.name))
    return paths


def test_a_re_run_leaves_what_matches_its_file_alone(server, capsys) -> None:
    url, fake = server
    assert main(["--server", url, *NO_TOPICS], env=ENV) == 0
    first = len(created(fake))
    assert main(["--server", url, *NO_TOPICS], env=ENV) == 0
    assert len(created(fake)) == first  # nothing created or replaced
    out = capsys.readouterr().out
    assert out.count("unchanged (the live object matches the file)") == 6


def test_an_appended_column_is_applied_with_create_or_replace(server, capsys, tmp_path: Path) -> None:
    url, fake = server
    assert main(["--server", url, *NO_TOPICS], env=ENV) == 0
    files = _edited(tmp_path, "02-user-trades.sql", "  S.SIDE AS SIDE\n", "  S.SIDE AS SIDE,\n  U.GENDER AS GENDER\n")
    assert main(["--server", url, *NO_TOPICS, *files], env=ENV) == 0
    [replaced] = [s for s in created(fake) if s.startswith("CREATE OR REPLACE")]
    assert replaced.startswith("CREATE OR REPLACE STREAM USER_TRADES WITH") and "IF NOT EXISTS" not in replaced
    assert "U.GENDER AS GENDER" in replaced
    assert "-> replaced (adds GENDER STRING)" in capsys.readouterr().out
    # a plain stream takes an appended column the same way (GENDER stays: dropping it would be refused)
    (tmp_path / "next").mkdir()
    files = _edited(
        tmp_path / "next",
        "01-sources.sql",
        "USERID VARCHAR\n) WITH",
        "USERID VARCHAR,\n  EXCHANGE VARCHAR\n) WITH",
        tmp_path,
    )
    assert main(["--server", url, *NO_TOPICS, *files], env=ENV) == 0
    assert "CREATE OR REPLACE STREAM STOCKTRADE (" in created(fake)[-1]


def test_a_change_ksqldb_cannot_make_in_place_stops_with_what_to_do(server, capsys, tmp_path: Path) -> None:
    url, fake = server
    assert main(["--server", url, *NO_TOPICS], env=ENV) == 0
    capsys.readouterr()
    inserted = "  U.GENDER AS GENDER,\n  S.SYMBOL AS SYMBOL,\n"
    files = _edited(tmp_path, "02-user-trades.sql", "  S.SYMBOL AS SYMBOL,\n", inserted)
    assert main(["--server", url, *NO_TOPICS, *files], env=ENV) == 1
    out = capsys.readouterr().out
    assert "ksqlDB cannot replace STREAM USER_TRADES in place: HTTP 400: Cannot upgrade data source" in out
    assert "DROP STREAM USER_TRADES;" in out and "--offset-reset latest" in out
    assert "settlement function would book each one again" in out
    assert not any("TRADE_SETTLEMENTS" in s for s in created(fake)[7:])  # it stopped there
    # a windowed analysis table is recomputed from its retained input instead
    files = _edited(tmp_path, "04-settlement-analysis.sql", "SIZE 1 MINUTE", "SIZE 5 MINUTES")
    assert main(["--server", url, *NO_TOPICS, "--replace", "settlements_by_symbol_disposition", *files], env=ENV) == 1
    out = capsys.readouterr().out
    assert "Upgrades not yet supported for StreamWindowedAggregate" in out
    assert "DROP TABLE SETTLEMENTS_BY_SYMBOL_DISPOSITION;" in out and "recomputed from every retained record" in out


def test_offset_reset_latest_reaches_the_queries_it_creates(server) -> None:
    url, fake = server
    assert main(["--server", url, *NO_TOPICS, "--offset-reset", "latest"], env=ENV) == 0
    assert {r["body"]["streamsProperties"]["ksql.streams.auto.offset.reset"] for r in fake.requests} == {"latest"}
