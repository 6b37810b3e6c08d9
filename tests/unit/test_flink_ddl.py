"""The table definitions generated from flink/tables.toml in both dialects, the statements read from flink/, and the
engine's Protobuf UDFs (the same functions the engine registers), without an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from localrun.experiments import ksql_schema
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.schemas.user_trade_pb2 import UserTrade
from streaming import ddl, statements, udfs

TABLES = ddl.load()


def test_one_description_gives_both_dialects_every_table() -> None:
    local = "\n".join(ddl.local(TABLES, {}, "127.0.0.1:9092"))
    cloud = "\n".join(ddl.cloud(TABLES))
    for name, table in TABLES.items():
        assert f"CREATE TABLE IF NOT EXISTS {ddl.q(name)} (" in cloud
        assert f"{ddl.q(name if not table.framed or table.role == 'source' else ddl.raw_name(table))}" in local
        for column, kind in table.columns:
            assert f"{ddl.q(column)} {kind}" in cloud
            if not table.framed:
                assert f"{ddl.q(column)} {kind}" in local
    # Cloud: registry formats, no connector options, watermarks on the $rowtime system column.
    assert "'connector'" not in cloud and "bootstrap" not in cloud
    assert "'value.format' = 'protobuf-registry'" in cloud and "'value.format' = 'json-registry'" in cloud
    watermark = "MODIFY WATERMARK FOR `$rowtime` AS `$rowtime` - INTERVAL '30' SECOND"
    assert f"ALTER TABLE `trade-settlements` {watermark}" in cloud
    assert "'changelog.mode' = 'upsert'" in cloud
    # Local: the Kafka connector, raw values for Protobuf, event time from the record timestamp.
    assert "'value.format' = 'raw'" in local and "'connector' = 'upsert-kafka'" in local
    assert local.count("METADATA FROM 'timestamp' VIRTUAL") == sum(t.role == "source" for t in TABLES.values())


def test_event_time_is_the_record_timestamp_never_a_decoded_column() -> None:
    local = ddl.local(TABLES, {"trade-settlements": "ts-topic"}, "b:1")
    raw = next(s for s in local if s.startswith("CREATE TABLE `trade-settlements__raw`"))
    view = next(s for s in local if s.startswith("CREATE VIEW `trade-settlements`"))
    # The watermark is on the source's metadata column, before the UDF; the view only passes it through.
    assert "WATERMARK FOR `$rowtime`" in raw and "'topic' = 'ts-topic'" in raw
    assert "WATERMARK" not in view and "decode_trade_settlements(`value`)" in view
    assert "'properties.isolation.level' = 'read_committed'" in raw


def test_bounded_and_idle_options_are_local_and_per_source() -> None:
    bounded = "\n".join(ddl.local(TABLES, {}, "b:1", bounded=True))
    unbounded = "\n".join(ddl.local(TABLES, {}, "b:1"))
    sources = sum(t.role == "source" for t in TABLES.values())
    assert bounded.count("'scan.bounded.mode' = 'latest-offset'") == sources
    assert "scan.bounded.mode" not in unbounded
    assert unbounded.count("'scan.watermark.idle-timeout' = '15 s'") == 1  # users only
    assert ddl.cloud_statement_properties(TABLES) == {"sql.tables.scan.idle-timeout": "15 s"}


def test_the_statements_are_the_same_text_in_both_dialects() -> None:
    join = statements.inserts(statements.JOIN)
    analysis = statements.inserts(statements.ANALYSIS)
    assert [i.table for i in join] == ["user_trades"]
    assert [i.table for i in analysis] == ["settlements_by_symbol_disposition", "exposure_by_symbol_hourly"]
    # Locally a JSON sink gets the statement unchanged; a framed sink gets its query unchanged, wrapped.
    plain = ddl.local_insert(TABLES[analysis[0].table], analysis[0].query, 0)
    assert plain == f"INSERT INTO `settlements_by_symbol_disposition`\n{analysis[0].query}"
    framed = ddl.local_insert(TABLES["user_trades"], join[0].query, 42)
    assert join[0].query in framed and framed.startswith("INSERT INTO `user_trades__raw`")
    assert "encode_user_trades(42, q.`REGIONID`, q.`QUANTITY`, q.`SYMBOL`, q.`PRICE`, q.`ACCOUNT`, q.`SIDE`)" in framed
    assert "q.`USERID`" in framed and framed.rstrip().endswith(") AS q")
    # Every column the statements write is one the description declares, in the sink's order.
    for insert in join + analysis:
        table = TABLES[insert.table]
        names = [c for c, _ in table.columns] + ([table.time_column] if table.time_column else [])
        lines = [line for line in insert.query.splitlines() if " AS " in line]
        aliases = [line.rsplit(" AS ", 1)[1].strip().rstrip(",") for line in lines]
        assert [a for a in aliases if a in names] == names, insert.table


def test_comments_and_statements_are_split() -> None:
    assert statements.split("-- a; comment\nSELECT 1; -- x\n\nSELECT 2;\n") == ["SELECT 1", "SELECT 2"]
    assert statements.parse_insert("INSERT INTO `a-b`\nSELECT 1").table == "a-b"
    with pytest.raises(ValueError, match="not an INSERT"):
        statements.parse_insert("SELECT 1")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ('role = "sink"\nwatermark_delay = "1 SECOND"', "a sink has no watermark"),
        ('role = "source"\nwatermark_delay = "soon"', "needs watermark_delay"),
        ('role = "source"\nformat = "protobuf"\nwatermark_delay = "1 SECOND"', "names its proto module"),
        ('role = "sink"\nkey = "nope"', "'nope' is not one of its columns"),
    ],
)
def test_a_wrong_description_is_refused_naming_the_table(tmp_path: Path, patch: str, message: str) -> None:
    fmt = "" if "format" in patch else 'format = "json"\n'
    text = f'[tables.t]\n{fmt}{patch}\ncolumns = [["a", "STRING"]]\n'
    (tmp_path / "t.toml").write_text(text)
    with pytest.raises(ddl.DescriptionError, match=f"table t: .*{message}"):
        ddl.load(tmp_path / "t.toml")


def test_the_udfs_read_and_write_columns_by_name_through_the_framing() -> None:
    encode = udfs.encoder(UserTrade, [c for c in TABLES["user_trades"].value_columns])
    value = encode(9, None, 3, "ZVV", 50, "A1", "BUY")
    # What ksqlDB's serializer writes for the registered schema: framing [0], then the message.
    assert value == ksql_schema.encode(9, UserTrade(quantity=3, symbol="ZVV", price=50, account="A1", side="BUY"))
    assert not UserTrade.FromString(udfs.strip_framing(value)).HasField("regionid")  # no user: absent, not ""
    decode = udfs.decoder(TradeSettlement, [c for c, _ in TABLES["trade-settlements"].columns])
    settlement = TradeSettlement(user="u", symbol="ZVV", amount=1.5, disposition="Completed", timestamp=7)
    assert decode(b"\x00\x00\x00\x00\x01\x00" + settlement.SerializeToString()) == (
        "u",
        "ZVV",
        1.5,
        "Completed",
        "",
        7,
        "",
        0,
        0,
    )
    # A longer message-index array (the second message of a schema) is skipped as the framing says.
    assert decode(b"\x00\x00\x00\x00\x01\x02\x02" + settlement.SerializeToString())[0] == "u"
    assert decode(b"not framed") is None and decode(None) is None and decode(b"\x00\x00\x00\x00\x01\x00\xff") is None
    with pytest.raises(ValueError, match="no field for column"):
        udfs.decoder(TradeSettlement, ["nope"])


def test_the_tool_prints_for_confluent_cloud_the_statements_the_local_engine_runs() -> None:
    from scripts import flink_sql

    cloud = flink_sql.render("cloud", "all")
    for name in flink_sql.FILES:
        for insert in statements.inserts(name):
            assert insert.text + ";" in cloud  # verbatim
            # ... and locally the same query runs, unchanged, inside the (possibly wrapped) INSERT
            assert insert.query in ddl.local_insert(TABLES[insert.table], insert.query, 1)
    assert "SET 'sql.tables.scan.idle-timeout' = '15 s';" in cloud
    assert cloud.index("CREATE TABLE IF NOT EXISTS `users`") < cloud.index("INSERT INTO user_trades")
    assert flink_sql.main(["--part", "ddl", "--dialect", "local"]) == 0


@pytest.mark.parametrize(("table", "message"), [("user_trades", UserTrade), ("trade-settlements", TradeSettlement)])
def test_the_protobuf_tables_are_the_protos_field_for_field(table: str, message: type) -> None:
    # The function reads user_trades by column name and writes trade-settlements from proto/: the description
    # must name every field, with the type Flink maps it to, and nothing else.
    proto_types = {9: "STRING", 5: "INT", 3: "BIGINT", 1: "DOUBLE"}  # FieldDescriptor.TYPE_* -> Flink SQL
    fields = {f.name.lower(): proto_types[f.type] for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]
    described = TABLES[table]
    columns = {c.lower(): t for c, t in described.columns if c in described.value_columns}
    assert columns == fields
