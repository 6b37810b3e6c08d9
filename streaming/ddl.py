"""Table definitions for the Flink statements, generated from one description (flink/tables.toml) in two dialects:
Confluent Cloud's (tables over topics and registry schemas) and the local engine's (OSS Flink's Kafka connector,
`raw` values decoded and encoded by Python UDFs, because OSS Flink has no Confluent-Protobuf format).

The statements themselves (flink/0*.sql) are the same text in both. Locally a table the statements read with a
Protobuf value is a view over a raw table; one they write with a Protobuf value cannot be (Flink writes no view),
so `local_insert` runs the statement's query unchanged and routes its rows through the encoding UDF
(`streaming.statements`). Pure: text in, text out.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FLINK_DIR = Path(__file__).resolve().parent.parent / "flink"
DESCRIPTION = FLINK_DIR / "tables.toml"
ROWTIME = "$rowtime"  # Confluent Cloud's system column for the Kafka record timestamp; locally a metadata column
DIALECTS = ("local", "cloud")
_INTERVAL = re.compile(r"^(\d+) (SECOND|MINUTE|HOUR)$")


class DescriptionError(ValueError):
    """The description is wrong: names the table and what."""


@dataclass(frozen=True)
class Table:
    name: str
    role: str  # source or sink
    format: str  # json or protobuf
    columns: tuple[tuple[str, str], ...]
    proto: str | None = None  # the proto/ module (without _pb2) of a protobuf value
    message: str | None = None
    key: str | None = None  # a column written as the record key (raw UTF-8), not in the value
    key_columns: tuple[str, ...] = ()  # a JSON key of these columns (also in the value)
    primary_key: str | None = None  # an upserted (versioned) source keyed by this column
    watermark_delay: str | None = None
    idle_timeout: str | None = None
    time_column: str | None = None  # a sink's column written as the record timestamp
    value_columns: tuple[str, ...] = field(default=())

    @property
    def framed(self) -> bool:
        return self.format == "protobuf"


def load(path: Path = DESCRIPTION) -> dict[str, Table]:
    """The tables of the description, checked."""
    raw = tomllib.loads(path.read_text())
    tables: dict[str, Table] = {}
    for name, spec in raw.get("tables", {}).items():
        columns = tuple((str(c), str(t)) for c, t in spec.get("columns", []))
        if not columns:
            raise DescriptionError(f"table {name}: no columns")
        names = [c for c, _ in columns]
        table = Table(
            name=name,
            role=spec.get("role", ""),
            format=spec.get("format", ""),
            columns=columns,
            proto=spec.get("proto"),
            message=spec.get("message"),
            key=spec.get("key"),
            key_columns=tuple(spec.get("key_columns", ())),
            primary_key=spec.get("primary_key"),
            watermark_delay=spec.get("watermark_delay"),
            idle_timeout=spec.get("idle_timeout"),
            time_column=spec.get("time_column"),
            value_columns=tuple(c for c in names if c != spec.get("key")),
        )
        _check(table, names)
        tables[name] = table
    return tables


def _check(table: Table, names: list[str]) -> None:
    where = f"table {table.name}"
    if table.role not in ("source", "sink"):
        raise DescriptionError(f"{where}: role must be source or sink, not {table.role!r}")
    if table.format not in ("json", "protobuf"):
        raise DescriptionError(f"{where}: format must be json or protobuf, not {table.format!r}")
    if table.framed and not (table.proto and table.message):
        raise DescriptionError(f"{where}: a protobuf table names its proto module and message")
    for column in (table.key, table.primary_key, *table.key_columns):
        if column is not None and column not in names:
            raise DescriptionError(f"{where}: {column!r} is not one of its columns")
    if table.role == "source" and not (table.watermark_delay and _INTERVAL.match(table.watermark_delay)):
        raise DescriptionError(f"{where}: a source needs watermark_delay like '30 SECOND'")
    if table.role == "sink" and (table.watermark_delay or table.idle_timeout):
        raise DescriptionError(f"{where}: a sink has no watermark")


def q(name: str) -> str:
    """An identifier quoted for Flink SQL (both dialects)."""
    return "`" + name.replace("`", "``") + "`"


def _columns(table: Table) -> list[str]:
    return [f"  {q(c)} {t}" for c, t in table.columns]


def _with(options: Mapping[str, str]) -> str:
    return "WITH (\n" + ",\n".join(f"  '{k}' = '{v}'" for k, v in options.items()) + "\n)"


def _watermark(table: Table) -> str:
    number, unit = (table.watermark_delay or "").split()
    return f"WATERMARK FOR {q(ROWTIME)} AS {q(ROWTIME)} - INTERVAL '{number}' {unit}"


# --- Confluent Cloud -------------------------------------------------------------------------------------------------


def cloud(tables: Mapping[str, Table], partitions: int = 6) -> list[str]:
    """Confluent Cloud's definitions: CREATE TABLE IF NOT EXISTS (a table over an existing topic with a registered
    schema is inferred already, and this is then a no-op), then what inference cannot know: each source's watermark
    on `$rowtime`, the users table's upsert changelog."""
    out = ["SET 'sql.local-time-zone' = 'UTC'"]
    for table in tables.values():
        value_format = "protobuf-registry" if table.framed else "json-registry"
        lines = _columns(table)
        options = {"value.format": value_format}
        if table.time_column:
            lines.append(f"  {q(table.time_column)} TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'")
        distribution = ""
        if table.primary_key:
            lines.append(f"  PRIMARY KEY ({q(table.primary_key)}) NOT ENFORCED")
            options = {"changelog.mode": "upsert", "key.format": "raw", **options}
            distribution = f"DISTRIBUTED BY ({q(table.primary_key)}) INTO {partitions} BUCKETS\n"
        elif table.key:
            options = {"key.format": "raw", **options}
            distribution = f"DISTRIBUTED BY ({q(table.key)}) INTO {partitions} BUCKETS\n"
        elif table.key_columns:
            options = {"key.format": "json-registry", **options}
            keys = ", ".join(q(c) for c in table.key_columns)
            distribution = f"DISTRIBUTED BY ({keys}) INTO {partitions} BUCKETS\n"
        out.append(
            f"CREATE TABLE IF NOT EXISTS {q(table.name)} (\n" + ",\n".join(lines) + f"\n)\n{distribution}"
            + _with(options)
        )  # fmt: skip
        if table.role == "source":
            out.append(f"ALTER TABLE {q(table.name)} MODIFY {_watermark(table)}")
    return out


def cloud_statement_properties(tables: Mapping[str, Table]) -> dict[str, str]:
    """Properties a statement reading these sources runs with on Confluent Cloud: the idle timeout (one per
    statement there, per table locally; the longest asked for)."""
    timeouts = [t.idle_timeout for t in tables.values() if t.idle_timeout]
    return {"sql.tables.scan.idle-timeout": max(timeouts, key=_seconds)} if timeouts else {}


def _seconds(duration: str) -> float:
    number, unit = duration.split()
    return float(number) * {"ms": 0.001, "s": 1.0, "min": 60.0}[unit]


# --- the local engine ------------------------------------------------------------------------------------------------


def raw_name(table: Table) -> str:
    """The local raw table behind a Protobuf-valued table."""
    return f"{table.name}__raw"


def udf_name(table: Table) -> str:
    verb = "decode" if table.role == "source" else "encode"
    return f"{verb}_{re.sub(r'[^0-9a-zA-Z]', '_', table.name)}"


def local(
    tables: Mapping[str, Table],
    topics: Mapping[str, str],
    bootstrap: str,
    *,
    bounded: bool = False,
) -> list[str]:
    """The local engine's definitions, each table over `topics[name]` (its own name if absent). `bounded`: read
    each source up to its end offsets at start, then finish (the watermark then moves to the end of time and every
    window and buffered join row is emitted), which makes a local run a job that ends."""
    # A watermark every 50 ms rather than 200: the temporal join emits a key's buffered trades when the watermark
    # passes them, key by key, so its output is out of time order by up to one watermark step. A run that catches
    # up on a backlog moves event time by seconds per step, and a settlement further behind than the analysis's
    # watermark_delay would be dropped as late there.
    out = ["SET 'table.local-time-zone' = 'UTC'", "SET 'pipeline.auto-watermark-interval' = '50 ms'"]
    for table in tables.values():
        topic = topics.get(table.name, table.name)
        base = {"topic": topic, "properties.bootstrap.servers": bootstrap}
        if table.role == "source":
            base["scan.startup.mode"] = "earliest-offset"
            # What the function's exactly-once ledger guarantees is what a read_committed reader sees: an aborted
            # transaction's records are not settlements (Kafka's consumer default reads them too).
            base["properties.isolation.level"] = "read_committed"
            if bounded:
                base["scan.bounded.mode"] = "latest-offset"
            if table.idle_timeout:
                base["scan.watermark.idle-timeout"] = table.idle_timeout
        out += _local_source(table, base) if table.role == "source" else _local_sink(table, base)
    return out


def _rowtime_column() -> str:
    return f"  {q(ROWTIME)} TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL"


def _local_source(table: Table, base: dict[str, str]) -> list[str]:
    if table.framed:
        raw = raw_name(table)
        lines = ["  `value` BYTES", _rowtime_column(), f"  {_watermark(table)}"]
        options = {"connector": "kafka", **base, "value.format": "raw"}
        create = f"CREATE TABLE {q(raw)} (\n" + ",\n".join(lines) + "\n) " + _with(options)
        fields = ",\n".join(f"  d.{q(c)} AS {q(c)}" for c, _ in table.columns)
        view = (
            f"CREATE VIEW {q(table.name)} AS\nSELECT\n{fields},\n  {q(ROWTIME)}\n"
            f"FROM (SELECT {udf_name(table)}(`value`) AS d, {q(ROWTIME)} FROM {q(raw)})\nWHERE d IS NOT NULL"
        )
        return [create, view]
    lines = [*_columns(table), _rowtime_column(), f"  {_watermark(table)}"]
    if table.primary_key:
        lines.append(f"  PRIMARY KEY ({q(table.primary_key)}) NOT ENFORCED")
        options = {
            "connector": "upsert-kafka",
            **{k: v for k, v in base.items() if k != "scan.startup.mode"},
            "key.format": "raw",
            "value.format": "json",
            "value.fields-include": "EXCEPT_KEY",
        }
    else:
        options = {"connector": "kafka", **base, "value.format": "json"}
    return [f"CREATE TABLE {q(table.name)} (\n" + ",\n".join(lines) + "\n) " + _with(options)]


def _local_sink(table: Table, base: dict[str, str]) -> list[str]:
    time = [f"  {q(table.time_column)} TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'"] if table.time_column else []
    if table.framed:
        lines = ["  `key` STRING", "  `value` BYTES", *time]
        options = {
            "connector": "kafka",
            **base,
            "key.format": "raw",
            "key.fields": "key",
            "value.format": "raw",
            "value.fields-include": "EXCEPT_KEY",
        }
        return [f"CREATE TABLE {q(raw_name(table))} (\n" + ",\n".join(lines) + "\n) " + _with(options)]
    options = {"connector": "kafka", **base, "value.format": "json"}
    if table.key_columns:
        options |= {"key.format": "json", "key.fields": ";".join(table.key_columns)}
    lines = [*_columns(table), *time]
    return [f"CREATE TABLE {q(table.name)} (\n" + ",\n".join(lines) + "\n) " + _with(options)]


def local_insert(table: Table, query: str, schema_id: int) -> str:
    """A statement writing `table` locally: `query` (the statement's own, unchanged) feeds the raw table through the
    encoding UDF when the value is Confluent-framed Protobuf, written with `schema_id`."""
    if not table.framed:
        return f"INSERT INTO {q(table.name)}\n{query}"
    key = "CAST(NULL AS STRING)" if table.key is None else f"q.{q(table.key)}"
    values = ", ".join(f"q.{q(c)}" for c in table.value_columns)
    time = f", q.{q(table.time_column)}" if table.time_column else ""
    return (
        f"INSERT INTO {q(raw_name(table))}\nSELECT {key}, {udf_name(table)}({schema_id}, {values}){time}\n"
        f"FROM (\n{query}\n) AS q"
    )


def udf_specs(tables: Mapping[str, Table]) -> list[dict[str, object]]:
    """What the engine registers (streaming.engine): one decoding UDF per Protobuf source, one encoding UDF per
    Protobuf sink, each with the columns it maps by name and their types."""
    specs: list[dict[str, object]] = []
    for table in tables.values():
        if not table.framed:
            continue
        columns = table.columns if table.role == "source" else tuple(c for c in table.columns if c[0] != table.key)
        specs.append(
            {"name": udf_name(table), "role": table.role, "proto": table.proto, "message": table.message,
             "columns": [list(c) for c in columns]}
        )  # fmt: skip
    return specs
