"""Apply the ksql/ statements, in file order, to a ksqlDB server's REST API.

    python scripts/ksql_apply.py --server https://pksqlc-xxxx.region.azure.confluent.cloud:443 \
        --bootstrap-servers pkc-xxxx.region.azure.confluent.cloud:9092 [--mode cloud|self-managed] [--dry-run]

- Topics first: every topic of the pipeline (sources, `user_trades`, `trade-settlements`, the dead-letter
  topic) is created if missing, or its partition count read if it exists, and the `*_PARTITIONS` variables
  follow the existing topics, so the statements apply to an empty cluster and to one that has them.
- `${NAME}` variables are substituted from `--var NAME=VALUE`, then the environment, then the defaults
  below. Secret variables (names containing KEY, SECRET, PASSWORD or TOKEN) come only from the environment,
  never the command line, and print as ****.
- Basic auth with `KSQLDB_API_KEY` / `KSQLDB_API_SECRET` from the environment. `--mode cloud` (default):
  the fully managed connector, and connector statements carry `X-Confluent-API-Key` /
  `X-Confluent-API-Secret` from `CONFLUENT_CLOUD_API_KEY` / `CONFLUENT_CLOUD_API_SECRET` (Confluent Cloud's
  ksqlDB manages connectors only then). `--mode self-managed`: ksql/self-managed/ replaces the connector file.
- Kafka access for the topic step: `KAFKA_API_KEY` / `KAFKA_API_SECRET` (SASL_SSL PLAIN) when set. A cluster
  or server that does not answer within `--timeout` stops the tool with one line (the Kafka client's own log
  lines are never printed).
- Prints each statement's status; stops at the first error with the server's message (exit 1).
- Safe to re-run, and edits apply: a stream or table that exists is compared with its file (DESCRIBE, and
  EXPLAIN of its query): unchanged → skipped; changed → `CREATE OR REPLACE`; refused by ksqlDB → the tool stops
  and says what to drop, re-create, and from which offset (`--offset-reset`). `--replace NAME` forces it.
- `--entry trigger` (default): the connector statement is left out, as the Kafka trigger reads user_trades;
  `--entry connector` applies it (deploy with `scripts/deploy.sh --entry connector`, which disables the trigger).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from devstack.cli_support import DEFAULT_TIMEOUT_S, ClientLog, HelpFormatter, kafka_conf, kafka_error_text, unreachable
from scripts import ksql_changes

ROOT = Path(__file__).resolve().parent.parent
KSQL_DIR = ROOT / "ksql"
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN", re.IGNORECASE)
DEFAULTS = {
    "SOURCE_PARTITIONS": "6",
    "USER_TRADES_PARTITIONS": "6",
    "SETTLEMENTS_PARTITIONS": "6",
    "DLQ_PARTITIONS": "1",
    "SINK_TASKS": "6",
}
# Every topic the pipeline needs, with the variable holding its partition count. stocktrade and users feed
# a join, so they must have the same count.
TOPICS = (
    ("stocktrade", "SOURCE_PARTITIONS"),
    ("users", "SOURCE_PARTITIONS"),
    ("user_trades", "USER_TRADES_PARTITIONS"),
    ("trade-settlements", "SETTLEMENTS_PARTITIONS"),
    ("user_trades-dlq", "DLQ_PARTITIONS"),
)
# Every persistent query reads from the beginning, and under exactly_once_v2: Kafka Streams reads
# read_committed only then (under at_least_once its consumers read uncommitted data, so the analysis would
# count the ledger's aborted attempts) and writes USER_TRADES transactionally (the function's repair reads
# skip its markers). On Confluent Cloud ksqlDB the property is accepted per query like any streams property.
STREAMS_PROPERTIES = {"ksql.streams.auto.offset.reset": "earliest", "processing.guarantee": "exactly_once_v2"}
CONNECTOR = re.compile(r"^\s*(CREATE|DROP)\s+(SINK\s+|SOURCE\s+)?CONNECTOR\b", re.IGNORECASE)
MODES = ("cloud", "self-managed")
# Which function settles user_trades: the Kafka trigger reads the topic itself; the connector POSTs it to the
# HTTP function. One at a time, or every trade is settled twice (docs/architecture.md, "One entry path at a time").
ENTRIES = ("trigger", "connector")
MASK = "****"
# Shorter values are not masked in messages: no issued credential is this short, and masking every occurrence of
# a short value ("a", "on", a word of the message) mangled the message itself.
MIN_MASKED_CHARS = 8


class ApplyError(RuntimeError):
    """Stops the run; the message is what the user needs."""


@dataclass(frozen=True)
class Statement:
    file: str
    index: int
    text: str

    @property
    def label(self) -> str:
        return f"{self.file} #{self.index}"


def split_statements(sql: str) -> list[str]:
    """Split on `;` outside quotes, backticks and `--` comments; drop comment-only pieces."""
    statements, current = [], []
    quote: str | None = None
    i = 0
    while i < len(sql):
        ch = sql[i]
        if quote:
            current.append(ch)
            if ch == quote:
                if quote == "'" and sql[i + 1 : i + 2] == "'":
                    current.append("'")
                    i += 1
                else:
                    quote = None
        elif ch == "-" and sql[i : i + 2] == "--":
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            continue
        elif ch in ("'", "`"):
            quote = ch
            current.append(ch)
        elif ch == ";":
            text = "".join(current).strip()
            if text:
                statements.append(text + ";")
            current = []
        else:
            current.append(ch)
        i += 1
    tail = "".join(current).strip()
    if tail:
        statements.append(tail + ";")
    return statements


def load_statements(files: Sequence[Path]) -> list[Statement]:
    out = []
    for path in files:
        for n, text in enumerate(split_statements(path.read_text()), start=1):
            out.append(Statement(path.name, n, text))
    return out


def variables(statements: Sequence[Statement]) -> set[str]:
    return {name for s in statements for name in VARIABLE.findall(s.text)}


def resolve_values(names: set[str], cli: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """Values for every variable used; raise naming all that are missing."""
    for name in cli:
        if SECRET_NAME.search(name):
            raise ApplyError(f"--var {name}=… looks like a secret: pass it through the environment instead")
    values, missing = {}, []
    for name in sorted(names):
        value = cli.get(name) or env.get(name) or DEFAULTS.get(name)
        if value is None:
            missing.append(name)
        else:
            values[name] = value
    if missing:
        raise ApplyError(f"variables not set: {', '.join(missing)} (set them in the environment)")
    return values


def substitute(text: str, values: Mapping[str, str], masked: bool = False) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        return MASK if masked and SECRET_NAME.search(name) else values[name]

    return VARIABLE.sub(repl, text)


def redact(text: str, values: Mapping[str, str]) -> str:
    """Mask secret values a server message might echo back from the statement.

    Only whole occurrences of values of at least MIN_MASKED_CHARS characters are masked (not one inside a longer
    word or token), longest first, so the message around them stays readable and a value that is a prefix of
    another cannot leave half of the other in clear.
    """
    secrets = {v for name, v in values.items() if SECRET_NAME.search(name) and len(v) >= MIN_MASKED_CHARS}
    for value in sorted(secrets, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", MASK, text)
    return text


def statement_files(mode: str, ksql_dir: Path = KSQL_DIR) -> list[Path]:
    """ksql/*.sql in order; in self-managed mode a file of ksql/self-managed/ replaces its namesake."""
    files = sorted(ksql_dir.glob("*.sql"))
    if mode == "self-managed":
        overrides = {p.name: p for p in (ksql_dir / "self-managed").glob("*.sql")}
        files = [overrides.get(p.name, p) for p in files]
    return files


def entry_statements(statements: Sequence[Statement], entry: str) -> list[Statement]:
    """The statements of one entry path: connector statements belong to `connector` alone, since the connector
    and the Kafka trigger would each settle every trade."""
    kept = [s for s in statements if entry == "connector" or not CONNECTOR.match(s.text)]
    for s in statements:
        if s not in kept:
            print(f"[{s.label}] skipped: a connector statement, and --entry is {entry}")
    return kept


def ensure_topics(
    conf: Mapping[str, str], wanted: Mapping[str, int], timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, int]:
    """Create missing topics with the wanted counts; return every topic's actual partition count. A cluster that
    does not answer within `timeout_s` is one `ApplyError` line; the client's log lines are kept, not printed."""
    from confluent_kafka.admin import AdminClient, NewTopic

    log = ClientLog(secrets=[conf.get("sasl.password", ""), conf.get("sasl.username", "")])
    admin = AdminClient({**conf, **log.conf()})
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except Exception as exc:  # noqa: BLE001 - KafkaException and friends: say what could not be reached
        admin.poll(0)  # serves the client's queued log lines and errors into `log`
        where = unreachable("Kafka", conf["bootstrap.servers"], timeout_s, log, exc)
        raise ApplyError(f"{where} (the topic step; --skip-topics skips it)") from None
    counts = {name: len(existing[name].partitions) for name in wanted if name in existing}
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=-1) for name, n in wanted.items() if name not in counts
    ]
    for name, future in admin.create_topics(missing).items() if missing else []:
        try:
            future.result(timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - a concurrent creator is fine; anything else is not
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise ApplyError(f"cannot create topic {name}: {kafka_error_text(exc)}") from None
        counts[name] = wanted[name]
    return counts


def topic_values(counts: Mapping[str, int], topics: Sequence[tuple[str, str]] = TOPICS) -> dict[str, str]:
    """The `*_PARTITIONS` variables as the topics really are; co-partitioned sources or an error."""
    values: dict[str, str] = {}
    for topic, variable in topics:
        if topic not in counts:
            continue
        if variable in values and values[variable] != str(counts[topic]):
            others = [t for t, v in topics if v == variable]
            raise ApplyError(
                f"{' and '.join(others)} have {', '.join(str(counts[t]) for t in others)} partitions: a join needs "
                "them co-partitioned; repartition one of them first"
            )
        values[variable] = str(counts[topic])
    return values


class KsqlClient:
    """Minimal client for `POST /ksql`."""

    def __init__(
        self,
        server: str,
        api_key: str | None,
        api_secret: str | None,
        timeout_s: float = 60.0,
        connector_headers: Mapping[str, str] | None = None,
        offset_reset: str = "earliest",
    ) -> None:
        self.url = server.rstrip("/") + "/ksql"
        self.streams_properties = {**STREAMS_PROPERTIES, "ksql.streams.auto.offset.reset": offset_reset}
        self.timeout_s = timeout_s
        self.headers = {
            "Content-Type": "application/vnd.ksql.v1+json; charset=utf-8",
            "Accept": "application/vnd.ksql.v1+json",
        }
        if api_key and api_secret:
            token = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.connector_headers = dict(connector_headers or {})

    def execute(self, statement: str) -> str:
        """Run one statement; return the server's status line or raise `ApplyError` with its message."""
        return _status(self.request(statement))

    def request(self, statement: str) -> list[dict]:
        """One statement; the entities ksqlDB answers with, or `ApplyError` with its message."""
        body = json.dumps({"ksql": statement, "streamsProperties": self.streams_properties}).encode()
        headers = dict(self.headers)
        if CONNECTOR.match(statement):
            headers.update(self.connector_headers)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310
                entities = json.loads(resp.read() or b"[]")
        except urllib.error.HTTPError as err:
            raise ApplyError(_error_message(err.code, err.read())) from None
        except urllib.error.URLError as err:
            raise ApplyError(f"cannot reach ksqlDB at {self.url}: {err.reason}") from None
        return entities if isinstance(entities, list) else [entities]


def apply_statement(client: KsqlClient, text: str, replace: Sequence[str] = ()) -> str:
    """Apply one statement so that the live object ends as the file says (scripts/ksql_changes.py): create
    what is missing, skip what matches, `CREATE OR REPLACE` what changed, or raise `ApplyError` saying what to
    drop and re-create when ksqlDB cannot replace it in place."""
    target = ksql_changes.target_of(text)
    if target is None:
        return client.execute(text)
    try:
        live = ksql_changes.describe(client.request, target.name)
    except ksql_changes.NotFound:
        return client.execute(text)
    wanted = ksql_changes.wanted_fields(client.request, target)
    changes = ksql_changes.differences(live.fields, wanted, compare_keys=target.query is None)
    if not changes and target.name not in replace:
        return "unchanged (the live object matches the file)"
    why = "; ".join(changes) or "--replace"
    try:
        status = client.execute(target.replace_statement(text))
    except ApplyError as exc:
        raise ApplyError(ksql_changes.instructions(target, live, str(exc))) from None
    return f"replaced ({why}): {status}"


def _status(entities: object) -> str:
    parts = []
    for entity in entities if isinstance(entities, list) else [entities]:
        if not isinstance(entity, dict):
            continue
        status = entity.get("commandStatus") or {}
        if status:
            parts.append(f"{status.get('status', 'SUCCESS')}: {status.get('message', '')}".strip())
        else:
            parts.append(f"SUCCESS: {entity.get('@type', 'ok')}")
        parts.extend(f"warning: {w.get('message')}" for w in entity.get("warnings", []) if isinstance(w, dict))
    return "; ".join(parts) or "SUCCESS"


def _error_message(code: int, raw: bytes) -> str:
    try:
        message = json.loads(raw).get("message", "")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        message = raw.decode("utf-8", "replace")[:500]
    if code in (401, 403):
        return f"authentication failed (HTTP {code}: {message}); check KSQLDB_API_KEY and KSQLDB_API_SECRET"
    return f"HTTP {code}: {message}"


def cloud_headers(env: Mapping[str, str]) -> dict[str, str]:
    key, secret = env.get("CONFLUENT_CLOUD_API_KEY"), env.get("CONFLUENT_CLOUD_API_SECRET")
    if not key or not secret:
        raise ApplyError(
            "connector statements on Confluent Cloud need CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET "
            "in the environment (sent as X-Confluent-API-Key / X-Confluent-API-Secret); use --mode self-managed "
            "for ksqlDB with your own Connect cluster"
        )
    return {"X-Confluent-API-Key": key, "X-Confluent-API-Secret": secret}


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--server", default=env.get("KSQLDB_ENDPOINT"), help="ksqlDB endpoint (or KSQLDB_ENDPOINT)")
    parser.add_argument("--mode", choices=MODES, default=env.get("KSQLDB_MODE", "cloud"), help="or KSQLDB_MODE")
    parser.add_argument(
        "--bootstrap-servers",
        default=env.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="for the topic step (or KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--entry",
        choices=ENTRIES,
        default=env.get("SETTLEMENT_ENTRY", "trigger"),
        help="the entry path deployed: connector statements apply only for 'connector' (or SETTLEMENT_ENTRY)",
    )
    parser.add_argument(
        "--offset-reset",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a newly created query starts reading its sources (see the message the tool prints when a "
        "query must be re-created)",
    )
    parser.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="NAME",
        help="CREATE OR REPLACE this stream/table even if its columns are unchanged (a WHERE or window edit)",
    )
    parser.add_argument("--skip-topics", action="store_true", help="do not create or read topics first")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="non-secret variable")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved statements, secrets masked")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="how long the topic step waits for the Kafka cluster, and each ksqlDB request for its answer",
    )
    parser.add_argument("files", nargs="*", type=Path, help="statement files (default: ksql/*.sql in order)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    try:
        cli = dict(v.split("=", 1) for v in args.var)
    except ValueError:
        parser.error("--var takes NAME=VALUE")
    files = args.files or statement_files(args.mode)
    try:
        statements = entry_statements(load_statements(files), args.entry)
        names = variables(statements)
        # What the command line lacks first, then what the environment lacks: a user with neither a server nor
        # the Cloud keys learns first about the one they must type.
        if not args.dry_run:
            if not args.server:
                raise ApplyError("no ksqlDB server: pass --server or set KSQLDB_ENDPOINT")
            if not args.skip_topics and not args.bootstrap_servers:
                raise ApplyError(
                    "no Kafka bootstrap servers for the topic step: pass --bootstrap-servers or --skip-topics"
                )
        connector_headers: dict[str, str] = {}
        if args.mode == "cloud" and any(CONNECTOR.match(s.text) for s in statements):
            connector_headers = cloud_headers(env)
        if args.dry_run:
            values = resolve_values(names, cli, env)
            print(
                f"-- mode {args.mode}; entry {args.entry}; "
                f"topics {'skipped' if args.skip_topics else 'created or read first'}"
            )
            if connector_headers:
                print("-- connector statements carry X-Confluent-API-Key: ****, X-Confluent-API-Secret: ****")
            for s in statements:
                print(f"-- {s.label}\n{substitute(s.text, values, masked=True)}\n")
            return 0
        if not args.skip_topics:
            wanted_values = resolve_values({v for _, v in TOPICS}, cli, env)
            wanted = {topic: int(wanted_values[variable]) for topic, variable in TOPICS}
            counts = ensure_topics(kafka_conf(args.bootstrap_servers, env), wanted, args.timeout)
            actual = topic_values(counts)
            for topic, variable in TOPICS:
                note = "" if actual[variable] == wanted_values[variable] else f" (exists; {variable} follows it)"
                print(f"[topics] {topic}: {counts[topic]} partitions{note}")
            cli = {**cli, **actual}
        values = resolve_values(names, cli, env)
        client = KsqlClient(
            args.server,
            env.get("KSQLDB_API_KEY"),
            env.get("KSQLDB_API_SECRET"),
            timeout_s=args.timeout,
            connector_headers=connector_headers,
            offset_reset=args.offset_reset,
        )
        replace = [n if n.startswith("`") else n.upper() for n in args.replace]
        for s in statements:
            first_line = s.text.splitlines()[0]
            try:
                status = apply_statement(client, substitute(s.text, values), replace)
            except ApplyError as exc:
                print(f"[{s.label}] {first_line} -> FAILED: {redact(str(exc), {**values, **_secret_env(env)})}")
                return 1
            print(f"[{s.label}] {first_line} -> {status}")
    except ApplyError as exc:
        print(f"ksql_apply: {redact(str(exc), _secret_env(env))}", file=sys.stderr)
        return 2
    return 0


def _secret_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if SECRET_NAME.search(k) and v}


if __name__ == "__main__":
    sys.exit(main())
