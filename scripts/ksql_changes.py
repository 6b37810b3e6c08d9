"""Whether a live ksqlDB stream or table still is what its statement file says, and what to do when it is not.

`IF NOT EXISTS` alone makes an edited statement a silent no-op. So before each `CREATE STREAM|TABLE` the apply
tool asks ksqlDB for the live object (`DESCRIBE`) and for what the file's statement would make of it: the
declared columns of a plain stream/table, or, for `... AS SELECT`, the columns ksqlDB derives from the query
(`EXPLAIN <the SELECT>`, run in ksqlDB's sandbox: nothing is created). ksqlDB's stored statement text is no
use for this: it is re-rendered by its SqlFormatter with injected properties, so it never equals a file.

Then: unchanged → skip; changed → `CREATE OR REPLACE`, which ksqlDB allows for appended columns and for
queries whose plan it can upgrade in place (the query keeps its id, offsets and state); refused → stop with
what to drop, what to re-create, and from which offset. Modelled on ksqlDB's REST API as its source has it
(confluentinc/ksql 8.5.0-0 master, strings checked against v0.29.0 and 7.6.0): `sourceDescription.fields`
(`FieldInfo`: name, schema.type, `"type": "KEY"` for key columns), HTTP 400 `Could not find STREAM/TABLE
'X' in the Metastore`, `queryDescription.fields` from EXPLAIN. A change that leaves every column as it was
(a WHERE clause, a window size) is not seen: `--replace NAME` forces the replacement.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# ksqlDB type names as DESCRIBE reports them (SqlBaseType): the file's aliases mapped onto them.
_TYPE_ALIASES = {"VARCHAR": "STRING", "INT": "INTEGER"}
_CREATE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(STREAM|TABLE)\s+(?:IF\s+NOT\s+EXISTS\s+)?(`[^`]+`|\w+)", re.IGNORECASE
)
_NOT_FOUND = "in the Metastore"
# The topic the settlement function reads: re-creating the query that writes it from the start would write
# every trade again, under new offsets, and the function would book each one again.
LEDGER_INPUT_TOPIC = "user_trades"

Field = tuple[str, str, bool]  # name, type, is a key column
Request = Callable[[str], list[dict]]  # one statement to ksqlDB's /ksql, its entities (raises on an error)


class NotFound(LookupError):
    """ksqlDB has no stream or table of that name."""


@dataclass(frozen=True)
class Target:
    """The stream or table a CREATE statement makes."""

    kind: str  # STREAM or TABLE
    name: str  # as ksqlDB stores it: unquoted names upper case
    query: str | None  # the `SELECT ... EMIT CHANGES;` of a CREATE ... AS SELECT, else None
    columns: tuple[Field, ...]  # declared columns of a plain CREATE, else ()

    def replace_statement(self, text: str) -> str:
        """The statement as `CREATE OR REPLACE` (ksqlDB lets IF NOT EXISTS win over OR REPLACE: both cannot
        stay)."""
        return _CREATE.sub(lambda m: f"CREATE OR REPLACE {m.group(1).upper()} {m.group(2)}", text, count=1)


def target_of(text: str) -> Target | None:
    """The stream or table of a `CREATE STREAM|TABLE` statement; None for anything else (connectors)."""
    m = _CREATE.match(text)
    if m is None:
        return None
    kind, raw = m.group(1).upper(), m.group(2)
    name = raw[1:-1] if raw.startswith("`") else raw.upper()
    select = re.search(r"\)\s*AS\s+(SELECT\b.*)$", text, re.IGNORECASE | re.DOTALL)
    if select:
        return Target(kind, name, select.group(1).strip(), ())
    return Target(kind, name, None, tuple(_declared(text[m.end() :])))


def _declared(rest: str) -> list[Field]:
    """The column list `( NAME TYPE [KEY|PRIMARY KEY], ... )` before WITH."""
    open_at = rest.find("(")
    close_at = rest.upper().find(") WITH")
    if open_at < 0 or close_at < 0:
        return []
    fields = []
    for part in rest[open_at + 1 : close_at].split(","):
        m = re.match(r"\s*(`[^`]+`|\w+)\s+(\w+)(.*)", part, re.DOTALL)
        if m is None:
            continue
        raw, ktype, tail = m.groups()
        name = raw[1:-1] if raw.startswith("`") else raw.upper()
        fields.append((name, normal_type(ktype), "KEY" in tail.upper()))
    return fields


def normal_type(ktype: str) -> str:
    upper = ktype.upper()
    return _TYPE_ALIASES.get(upper, upper)


def _fields(entities: list[dict], entity: str, key: str) -> tuple[Field, ...]:
    for e in entities:
        body = e.get(key) if isinstance(e, dict) else None
        if isinstance(body, dict):
            return tuple(
                (str(f.get("name")), str((f.get("schema") or {}).get("type")), f.get("type") == "KEY")
                for f in body.get("fields") or []
            )
    raise ValueError(f"ksqlDB answered {entity} without {key}")


@dataclass(frozen=True)
class Live:
    fields: tuple[Field, ...]
    readers: tuple[str, ...]  # persistent queries reading it
    writers: tuple[str, ...]  # persistent queries writing it (its CSAS/CTAS, INSERT INTOs)
    topic: str


def describe(request: Request, name: str) -> Live:
    """The live stream or table; `NotFound` when ksqlDB has none of that name."""
    quoted = name if name.isupper() and re.fullmatch(r"\w+", name) else f"`{name}`"
    try:
        entities = request(f"DESCRIBE {quoted};")
    except Exception as exc:
        if _NOT_FOUND in str(exc):
            raise NotFound(name) from None
        raise
    for e in entities:
        body = e.get("sourceDescription") if isinstance(e, dict) else None
        if isinstance(body, dict):
            return Live(
                fields=_fields([e], "DESCRIBE", "sourceDescription"),
                readers=tuple(str(q.get("id")) for q in body.get("readQueries") or []),
                writers=tuple(str(q.get("id")) for q in body.get("writeQueries") or []),
                topic=str(body.get("topic") or ""),
            )
    raise ValueError("ksqlDB answered DESCRIBE without a sourceDescription")


def wanted_fields(request: Request, target: Target) -> tuple[Field, ...]:
    """The columns the file's statement makes: declared, or derived by ksqlDB from the query (EXPLAIN of the
    SELECT alone runs in its sandbox and creates nothing). Key-ness is compared for declared columns only: a
    query's key columns are those of its GROUP BY / PARTITION BY, which EXPLAIN of a SELECT reports as such."""
    if target.query is None:
        return target.columns
    return _fields(request(f"EXPLAIN {target.query}"), "EXPLAIN", "queryDescription")


def differences(live: Sequence[Field], wanted: Sequence[Field], compare_keys: bool) -> list[str]:
    """What the file changes, in words: columns added, dropped, moved or retyped."""

    def shape(f: Field) -> tuple[str, str, bool]:
        return (f[0], f[1], f[2] if compare_keys else False)

    live_s, wanted_s = [shape(f) for f in live], [shape(f) for f in wanted]
    if live_s == wanted_s:
        return []
    live_by, wanted_by = {f[0]: f for f in live_s}, {f[0]: f for f in wanted_s}
    out = [f"adds {n} {t}" for n, t, _ in wanted_s if n not in live_by]
    out += [f"drops {n}" for n, _, _ in live_s if n not in wanted_by]
    out += [f"changes {n} from {live_by[n][1]} to {t}" for n, t, _ in wanted_s if n in live_by and live_by[n][1] != t]
    common = [n for n, _, _ in live_s if n in wanted_by]
    if not out and common != [n for n, _, _ in wanted_s if n in live_by]:
        out.append("reorders the columns")
    if not out:
        out.append("changes which columns are keys")
    return out


def instructions(target: Target, live: Live, refusal: str) -> str:
    """What to do when ksqlDB refuses to replace the object in place."""
    kind = target.kind
    steps = [f"ksqlDB cannot replace {kind} {target.name} in place: {refusal}", "To apply the change:"]
    if live.readers:
        steps.append(
            f"  1. drop what reads it first (queries {', '.join(live.readers)}): DROP the streams/tables they "
            "write, without DELETE TOPIC; this tool re-creates them after it, in file order"
        )
    steps.append(
        f"  {len(steps) - 1}. DROP {kind} {target.name};  (no DELETE TOPIC: the topic and its records stay; "
        "ksqlDB terminates the query that writes it)"
    )
    if target.query is None:
        steps.append(
            f"  {len(steps) - 1}. re-run this tool: {target.name} is declared again over the same topic, "
            "nothing is re-read"
        )
    elif live.topic == LEDGER_INPUT_TOPIC:
        steps.append(
            f"  {len(steps) - 1}. stop the producers of its sources, then re-run this tool with "
            f"--offset-reset latest: the new query reads from the end, so no trade is written to "
            f"{LEDGER_INPUT_TOPIC} twice (from 'earliest' every retained trade would be written again under new "
            "offsets, and the settlement function would book each one again)"
        )
    else:
        steps.append(
            f"  {len(steps) - 1}. re-run this tool: the new query reads its sources from 'earliest' (the tool's "
            "default), so it is recomputed from every retained record"
        )
    return "\n".join(steps)
