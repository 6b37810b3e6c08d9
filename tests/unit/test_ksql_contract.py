"""ksqlDB cannot run here, so prove our side of the contract by reading the statements themselves."""

from __future__ import annotations

import re

import pytest
from google.protobuf.descriptor import FieldDescriptor

from scripts.ksql_apply import DEFAULTS, KSQL_DIR, load_statements, resolve_values, substitute, variables
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.schemas.user_trade_pb2 import UserTrade

KSQL_TO_PROTO = {
    "VARCHAR": FieldDescriptor.TYPE_STRING,
    "STRING": FieldDescriptor.TYPE_STRING,
    "INT": FieldDescriptor.TYPE_INT32,
    "INTEGER": FieldDescriptor.TYPE_INT32,
    "BIGINT": FieldDescriptor.TYPE_INT64,
    "DOUBLE": FieldDescriptor.TYPE_DOUBLE,
}
# The fully managed connector's documented configuration (Confluent Cloud, Azure Functions Sink).
CONNECTOR_KEYS = {
    "connector.class",
    "name",
    "topics",
    "input.data.format",
    "function.url",
    "function.key",
    "max.batch.size",
    "max.pending.requests",
    "behavior.on.error",
    "tasks.max",
    "kafka.auth.mode",
    "kafka.api.key",
    "kafka.api.secret",
    "kafka.service.account.id",
    "schema.context.name",
}
# The self-managed connector (io.confluent.connect.http.AzureFunctionsSinkConnector): its configuration
# reference, plus the Kafka Connect worker keys every connector takes (topics, tasks.max, converters).
SELF_MANAGED_KEYS = {
    "connector.class",
    "name",
    "topics",
    "tasks.max",
    "key.converter",
    "value.converter",
    "value.converter.schema.registry.url",
    "function.url",
    "function.key",
    "max.batch.size",
    "max.pending.requests",
    "request.timeout",
    "retry.timeout",
    "max.retries",
    "retry.backoff.ms",
    "behavior.on.error",
    "reporter.bootstrap.servers",
    "reporter.result.topic.name",
    "reporter.result.topic.replication.factor",
    "reporter.error.topic.name",
    "reporter.error.topic.replication.factor",
    "confluent.topic.bootstrap.servers",
    "confluent.topic.replication.factor",
}
STATEMENTS = load_statements(sorted(KSQL_DIR.glob("*.sql")))


def statement(pattern: str) -> str:
    found = [s.text for s in STATEMENTS if re.search(pattern, s.text, re.IGNORECASE)]
    assert len(found) == 1, f"expected one statement matching {pattern!r}, found {len(found)}"
    return found[0]


def declared_columns(name: str) -> list[tuple[str, str, bool]]:
    """(column, type, is_key) of a CREATE STREAM/TABLE with an explicit column list."""
    text = statement(rf"CREATE (STREAM|TABLE) IF NOT EXISTS {name} \(")
    body = text[text.index("(") + 1 : text.index(") WITH")]
    cols = []
    for part in (p.strip() for p in body.split(",")):
        m = re.match(r"`?(\w+)`?\s+(\w+)(.*)", part)
        assert m, part
        cols.append((m.group(1), m.group(2).upper(), "KEY" in m.group(3).upper()))
    return cols


def proto_fields(message: type) -> list[tuple[str, int]]:
    return [(f.name, f.type) for f in sorted(message.DESCRIPTOR.fields, key=lambda f: f.number)]  # type: ignore[attr-defined]


def user_trades_value_columns(text: str) -> list[tuple[str, str]]:
    """(alias, ksqlDB type) of the USER_TRADES select list's value columns, in order (the key column USERID,
    first, becomes the record key); types come from the sources' declarations in ksql/01."""
    select = text[text.index("AS SELECT") + len("AS SELECT") : text.index("FROM")]
    items = [re.match(r"(\w+)\.(\w+) AS (\w+)", i.strip()).groups() for i in select.split(",")]  # type: ignore[union-attr]
    types = {("S", c): t for c, t, _ in declared_columns("STOCKTRADE")}
    types.update({("U", c): t for c, t, _ in declared_columns("USERS")})
    assert items[0] == ("S", "USERID", "USERID")
    return [(alias, types[(src, col)]) for src, col, alias in items[1:]]


def test_user_trades_select_list_is_wire_compatible_with_user_trade() -> None:
    text = statement(r"CREATE STREAM IF NOT EXISTS USER_TRADES WITH")
    assert re.search(r"VALUE_FORMAT\s*=\s*'PROTOBUF'", text) and re.search(r"KEY_FORMAT\s*=\s*'KAFKA'", text)
    assert "LEFT JOIN USERS" in text
    # The join key becomes the record key; every other column is a value field, numbered from 1 in order.
    # Our decoder reads by name whatever the order (settlement/serde/columns.py); keeping ours in step keeps the
    # one-call fast path, so this pins the order too.
    value_columns = [(alias, KSQL_TO_PROTO[t]) for alias, t in user_trades_value_columns(text)]
    assert [(n.upper(), t) for n, t in proto_fields(UserTrade)] == value_columns
    assert [f.number for f in sorted(UserTrade.DESCRIPTOR.fields, key=lambda f: f.number)] == list(
        range(1, len(value_columns) + 1)
    )


def test_analysis_stream_columns_match_trade_settlement() -> None:
    cols = declared_columns("TRADE_SETTLEMENTS")
    assert [c for c in cols if c[2]] == [("USERID", "VARCHAR", True)]
    value_cols = [(name, KSQL_TO_PROTO[t]) for name, t, key in cols if not key]
    assert value_cols == proto_fields(TradeSettlement)
    text = statement(r"CREATE STREAM IF NOT EXISTS TRADE_SETTLEMENTS")
    assert "TIMESTAMP = '`timestamp`'" in text  # event time is the settlement's trade timestamp


def test_windowed_counts_are_one_table_per_symbol_and_disposition_with_grace() -> None:
    text = statement(r"CREATE TABLE IF NOT EXISTS SETTLEMENTS_BY_SYMBOL_DISPOSITION")
    assert re.search(r"WINDOW TUMBLING \(SIZE \d+ \w+, GRACE PERIOD \d+ \w+\)", text)
    assert re.search(r"GROUP BY `symbol`, `disposition`", text)
    assert "FROM TRADE_SETTLEMENTS" in text


def test_connector_uses_only_documented_keys_and_no_literal_secrets() -> None:
    text = statement(r"CREATE SINK CONNECTOR")
    pairs = dict(re.findall(r"'([\w.]+)'\s*=\s*'([^']*)'", text))
    assert set(pairs) <= CONNECTOR_KEYS, set(pairs) - CONNECTOR_KEYS
    assert pairs["connector.class"] == "AzureFunctionsSink"
    assert pairs["topics"] == "user_trades" and pairs["input.data.format"] == "PROTOBUF"
    for secret in ("function.key", "kafka.api.key", "kafka.api.secret", "function.url"):
        assert re.fullmatch(r"\$\{[A-Z_]+\}", pairs[secret]), f"{secret} must be a variable, not a value"
    assert pairs["max.pending.requests"] == "1"  # per-partition order, explained in the file


def test_self_managed_connector_uses_only_its_documented_keys() -> None:
    [connector] = load_statements([KSQL_DIR / "self-managed" / "03-sink-connector.sql"])
    pairs = dict(re.findall(r"'([\w.]+)'\s*=\s*'([^']*)'", connector.text))
    assert set(pairs) <= SELF_MANAGED_KEYS, set(pairs) - SELF_MANAGED_KEYS
    assert pairs["connector.class"] == "io.confluent.connect.http.AzureFunctionsSinkConnector"
    assert pairs["function.key"] == "${FUNCTION_KEY}" and pairs["max.pending.requests"] == "1"


def test_case_branches_of_a_double_are_double_literals() -> None:
    # `0.0` is a DECIMAL in ksqlDB and every CASE branch must have exactly the THEN type.
    for s in STATEMENTS:
        for then, other in re.findall(r"THEN (.+?) ELSE (.+?) END", s.text):
            if then == "`amount`":
                assert other == "CAST(0 AS DOUBLE)", (s.label, other)
        assert not re.search(r"(THEN|ELSE)\s+\d+\.\d+", s.text), s.label


def test_value_schema_full_names_are_the_protos_full_names() -> None:
    user_trades = statement(r"CREATE STREAM IF NOT EXISTS USER_TRADES WITH")
    settlements = statement(r"CREATE STREAM IF NOT EXISTS TRADE_SETTLEMENTS")
    assert f"VALUE_SCHEMA_FULL_NAME = '{UserTrade.DESCRIPTOR.full_name}'" in user_trades
    assert f"VALUE_SCHEMA_FULL_NAME = '{TradeSettlement.DESCRIPTOR.full_name}'" in settlements
    # null REGIONID explicit on the wire, as the proto's `optional` declares it
    assert "VALUE_PROTOBUF_NULLABLE_REPRESENTATION = 'OPTIONAL'" in user_trades
    assert UserTrade.DESCRIPTOR.fields_by_name["regionid"].has_presence


def test_the_local_ksqldb_schema_text_follows_the_statement() -> None:
    from localrun.experiments import ksql_schema

    text = statement(r"CREATE STREAM IF NOT EXISTS USER_TRADES WITH")
    assert re.search(r"VALUE_SCHEMA_FULL_NAME = '([\w.]+)'", text).group(1) == ksql_schema.FULL_NAME  # type: ignore[union-attr]
    aliases = re.findall(r"\w+\.\w+ AS (\w+)", text)[1:]
    assert [name for name, _ in ksql_schema.COLUMNS] == aliases


def test_topics_ksqldb_writes_to_or_reads_have_partitions_the_apply_tool_fills() -> None:
    from scripts.ksql_apply import TOPICS

    variables_by_topic = dict(TOPICS)
    for s in STATEMENTS:
        topic = re.search(r"KAFKA_TOPIC = '([\w.-]+)'", s.text)
        if topic and topic.group(1) in variables_by_topic:
            assert f"PARTITIONS = ${{{variables_by_topic[topic.group(1)]}}}" in s.text, s.label


def test_every_variable_is_substituted() -> None:
    names = variables(STATEMENTS)
    env = {n: f"value-of-{n}" for n in names if n not in DEFAULTS}
    values = resolve_values(names, {}, env)
    for s in STATEMENTS:
        resolved = substitute(s.text, values)
        assert "${" not in resolved, s.label


def test_missing_variables_are_all_named() -> None:
    from scripts.ksql_apply import ApplyError

    with pytest.raises(ApplyError, match="variables not set: FUNCTION_KEY, FUNCTION_URL, KAFKA_API_KEY"):
        resolve_values(variables(STATEMENTS), {}, {})
