"""Apply the ksql/ statements, in file order, to a ksqlDB server's REST API.

    python scripts/ksql_apply.py --server https://pksqlc-xxxx.region.azure.confluent.cloud:443 [--dry-run]

- `${NAME}` variables are substituted from `--var NAME=VALUE`, then the environment, then the defaults
  below. Secret variables (names containing KEY, SECRET, PASSWORD or TOKEN) come only from the environment,
  never the command line, and print as ****.
- Basic auth with `KSQLDB_API_KEY` / `KSQLDB_API_SECRET` from the environment.
- Prints each statement's status; stops at the first error with the server's message (exit 1).
- Safe to re-run: every statement is `IF NOT EXISTS`.
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

ROOT = Path(__file__).resolve().parent.parent
KSQL_DIR = ROOT / "ksql"
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN", re.IGNORECASE)
DEFAULTS = {"SOURCE_PARTITIONS": "6", "USER_TRADES_PARTITIONS": "6", "SINK_TASKS": "6"}
MASK = "****"


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
    """Mask secret values a server message might echo back from the statement."""
    for name, value in values.items():
        if SECRET_NAME.search(name) and value:
            text = text.replace(value, MASK)
    return text


class KsqlClient:
    """Minimal client for `POST /ksql`."""

    def __init__(self, server: str, api_key: str | None, api_secret: str | None, timeout_s: float = 60.0) -> None:
        self.url = server.rstrip("/") + "/ksql"
        self.timeout_s = timeout_s
        self.headers = {
            "Content-Type": "application/vnd.ksql.v1+json; charset=utf-8",
            "Accept": "application/vnd.ksql.v1+json",
        }
        if api_key and api_secret:
            token = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def execute(self, statement: str) -> str:
        """Run one statement; return the server's status line or raise `ApplyError` with its message."""
        body = json.dumps(
            {"ksql": statement, "streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"}}
        ).encode()
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310
                return _status(json.loads(resp.read() or b"[]"))
        except urllib.error.HTTPError as err:
            raise ApplyError(_error_message(err.code, err.read())) from None
        except urllib.error.URLError as err:
            raise ApplyError(f"cannot reach ksqlDB at {self.url}: {err.reason}") from None


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


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=env.get("KSQLDB_ENDPOINT"), help="ksqlDB endpoint (or KSQLDB_ENDPOINT)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="non-secret variable")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved statements, secrets masked")
    parser.add_argument("files", nargs="*", type=Path, help="statement files (default: ksql/*.sql in order)")
    args = parser.parse_args(argv)
    try:
        cli = dict(v.split("=", 1) for v in args.var)
    except ValueError:
        parser.error("--var takes NAME=VALUE")
    files = args.files or sorted(KSQL_DIR.glob("*.sql"))
    try:
        statements = load_statements(files)
        values = resolve_values(variables(statements), cli, env)
        if args.dry_run:
            for s in statements:
                print(f"-- {s.label}\n{substitute(s.text, values, masked=True)}\n")
            return 0
        if not args.server:
            raise ApplyError("no ksqlDB server: pass --server or set KSQLDB_ENDPOINT")
        client = KsqlClient(args.server, env.get("KSQLDB_API_KEY"), env.get("KSQLDB_API_SECRET"))
        for s in statements:
            first_line = s.text.splitlines()[0]
            try:
                status = client.execute(substitute(s.text, values))
            except ApplyError as exc:
                print(f"[{s.label}] {first_line} -> FAILED: {redact(str(exc), values)}")
                return 1
            print(f"[{s.label}] {first_line} -> {status}")
    except ApplyError as exc:
        print(f"ksql_apply: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
