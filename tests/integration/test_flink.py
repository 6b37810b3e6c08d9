"""The Flink statements (flink/) on the real engine: one engine for the whole session, unique topics per test.

The join and each analysis are checked exactly against figures computed here: a changed users row, a user with
no row, an idle users topic, a late settlement, an empty window; and a statement the engine refuses fails with
Flink's own error.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from devstack import flink
from localrun.experiments import streaming_run as sr
from localrun.experiments.kafka import create_topics, read_to_end
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from streaming import ddl, statements

# One engine (about 2 GB, a JVM) for the module: its tests run in one process, one after another.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("flink")]

BASE = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC: old timestamps, hence retention.ms -1 on every topic


@pytest.fixture(scope="session")
def engine(stack) -> Iterator[flink.Engine]:
    with flink.running(ddl.udf_specs(ddl.load()), parallelism=1) as running:
        yield running


def _topics(bootstrap: str) -> sr.StreamTopics:
    run = uuid.uuid4().hex[:8]
    topics = sr.StreamTopics.for_run(run, f"ut-{run}", f"ts-{run}")
    create_topics(bootstrap, dict.fromkeys(topics.names.values(), 1), {"retention.ms": "-1"})
    return topics


def _fresh(engine: flink.Engine, bootstrap: str, topics: sr.StreamTopics, bounded: bool) -> None:
    """This test's table definitions, replacing the previous test's (one catalog per engine)."""
    for table in ddl.load().values():
        for name in (table.name, ddl.raw_name(table)):
            engine.sql(f"DROP VIEW IF EXISTS {ddl.q(name)}")
            engine.sql(f"DROP TABLE IF EXISTS {ddl.q(name)}")
    sr.apply_definitions(engine, bootstrap, topics, bounded)


def _wait_for(predicate, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_the_join_meets_each_trade_with_the_users_row_valid_at_its_time(stack, engine: flink.Engine) -> None:
    topics = _topics(stack.bootstrap)
    cfg = sr.SourceConfig(users=4, moved="User_2", moved_at=0.5, step_us=1_000_000)
    sources = sr.produce_sources(stack.bootstrap, topics, 300, BASE, cfg)
    schema_id = sr.register_user_trades(stack.registry_url, topics["user_trades"])
    _fresh(engine, stack.bootstrap, topics, bounded=True)
    sr.run_file(engine, statements.JOIN, {"user_trades": schema_id}, wait=True)

    joined = read_to_end(stack.bootstrap, topics["user_trades"])
    check = sr.check_join(sources, joined, cfg)
    assert check.ok, check
    assert check.no_user > 0 and check.moved > 0  # both cases really occurred
    # Before the change User_2 had its first region, after it the new one, at the exact timestamp.
    moved_at = next(stamp for stamp, v in sources.users if v["regionid"] == "Region_moved")
    regions = {m.timestamp()[1] < moved_at: sr.decode_user_trade(m).regionid for m in joined if m.key() == b"User_2"}
    assert regions == {True: "Region_2", False: "Region_moved"}
    # The value is registered and framed as ksqlDB would: the schema id of the ksqlDB-style subject.
    assert {int.from_bytes((m.value() or b"")[1:5], "big") for m in joined} == {schema_id}


def test_an_idle_users_topic_does_not_hold_the_join_back(stack, engine: flink.Engine) -> None:
    # Unbounded, as on Confluent Cloud: the users rows are old and nothing more comes on that topic. Without the
    # idle timeout the join's watermark would wait for users forever and emit nothing.
    topics = _topics(stack.bootstrap)
    cfg = sr.SourceConfig(users=3, moved="User_1", moved_at=0.0, step_us=1_000_000)
    sources = sr.produce_sources(stack.bootstrap, topics, 60, BASE, cfg)
    schema_id = sr.register_user_trades(stack.registry_url, topics["user_trades"])
    _fresh(engine, stack.bootstrap, topics, bounded=False)
    (job,) = sr.run_file(engine, statements.JOIN, {"user_trades": schema_id}, wait=False)
    try:
        # The watermark trails the last trade by stocktrade's 5 s: every trade up to then is joined.
        emitted = [s for s, _ in sources.trades if s <= sources.trades[-1][0] - 5000]
        _wait_for(lambda: len(read_to_end(stack.bootstrap, topics["user_trades"])) >= len(emitted), 90)
        joined = read_to_end(stack.bootstrap, topics["user_trades"])
        assert sorted(m.timestamp()[1] for m in joined) == emitted
        partial = sr.Sources(sources.users, [(s, v) for s, v in sources.trades if s in set(emitted)])
        assert sr.check_join(partial, joined, cfg).ok
    finally:
        engine.cancel(job)


def _settle(bootstrap: str, topic: str, rows: list[tuple[int, str, str, float]]) -> None:
    """Settlements as the function writes them (Confluent-framed, record timestamp = the trade's), in order."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, (stamp, symbol, disposition, amount) in enumerate(rows):
        value = TradeSettlement(
            user="User_1", symbol=symbol, amount=amount, disposition=disposition, reason="r", timestamp=stamp,
            source_topic="ut", source_partition=0, source_offset=i,
        ).SerializeToString()  # fmt: skip
        producer.produce(topic, b"\x00\x00\x00\x00\x07\x00" + value, b"User_1", timestamp=stamp)
    assert producer.flush(10) == 0


def test_both_analyses_are_exact_and_an_empty_window_is_not_emitted(stack, engine: flink.Engine) -> None:
    topics = _topics(stack.bootstrap)
    m = sr.MINUTE_MS
    rows = [
        (BASE + 1_000, "ZVV", "Completed", 100.0),
        (BASE + 2_000, "ZVV", "Completed", 250.0),
        (BASE + 3_000, "ZVV", "Pending", 200_000.0),
        (BASE + 59_999, "ZBZX", "SEC Flagged", 42.0),
        (BASE + m, "ZBZX", "Rejected", 7.0),  # on a window's start: the second window
        # nothing in the third minute: an empty window, which Flink (like ksqlDB) never emits
        (BASE + 3 * m + 5, "ZVV", "Completed", 1.0),
        (BASE + 61 * m, "ZVV", "Completed", 3.0),  # the next hour
    ]
    _settle(stack.bootstrap, topics["trade-settlements"], rows)
    _fresh(engine, stack.bootstrap, topics, bounded=True)
    sr.run_file(engine, statements.ANALYSIS, {}, wait=True)

    settled = sr.settled_pairs(read_to_end(stack.bootstrap, topics["trade-settlements"]))
    got = sr.engine_windows(stack.bootstrap, topics)
    expected = sr.expected_windows(settled)
    assert sr.check_windows(expected, got).ok, sr.check_windows(expected, got).wrong
    minutes = sorted({start for start, *_ in got[sr.BY_SYMBOL]})
    assert minutes == ["2026-01-01 00:00:00", "2026-01-01 00:01:00", "2026-01-01 00:03:00", "2026-01-01 01:01:00"]
    assert got[sr.BY_SYMBOL][("2026-01-01 00:00:00", "ZVV", "Completed")] == {"TRADES": 2, "AMOUNT": 350.0}
    assert got[sr.EXPOSURE][("2026-01-01 00:00:00", "ZVV")] == {
        "PENDING_AMOUNT": 200_000.0, "FLAGGED_AMOUNT": 0.0, "COMPLETED_AMOUNT": 351.0, "REJECTED_TRADES": 0,
        "TRADES": 4,
    }  # fmt: skip


def test_a_settlement_later_than_the_watermark_is_dropped_from_its_closed_window(stack, engine) -> None:
    # trade-settlements' watermark trails the largest timestamp by 30 s. A settlement for minute 0 that arrives
    # after one at 2:00 has moved the watermark to 1:30 finds its window emitted already: it is not counted, as
    # ksqlDB drops a record after the grace period.
    topics = _topics(stack.bootstrap)
    m = sr.MINUTE_MS
    on_time = [(BASE + 1_000, "ZVV", "Completed", 10.0), (BASE + 2 * m, "ZVV", "Completed", 20.0)]
    _settle(stack.bootstrap, topics["trade-settlements"], on_time)
    _fresh(engine, stack.bootstrap, topics, bounded=False)
    jobs = sr.run_file(engine, statements.ANALYSIS, {}, wait=False)
    try:
        first = ("2026-01-01 00:00:00", "ZVV", "Completed")
        _wait_for(lambda: first in sr.engine_windows(stack.bootstrap, topics)[sr.BY_SYMBOL], 90)
        _settle(stack.bootstrap, topics["trade-settlements"], [(BASE + 30_000, "ZVV", "Completed", 1000.0)])  # late
        _settle(stack.bootstrap, topics["trade-settlements"], [(BASE + 10 * m, "ZVV", "Completed", 5.0)])
        second = ("2026-01-01 00:02:00", "ZVV", "Completed")
        _wait_for(lambda: second in sr.engine_windows(stack.bootstrap, topics)[sr.BY_SYMBOL], 90)
        got = sr.engine_windows(stack.bootstrap, topics)[sr.BY_SYMBOL]
        assert got[first] == {"TRADES": 1, "AMOUNT": 10.0}  # emitted once, without the late 1000.0
        assert got[second] == {"TRADES": 1, "AMOUNT": 20.0}
    finally:
        for job in jobs:
            engine.cancel(job)


def test_a_statement_the_engine_refuses_fails_with_flinks_error(engine: flink.Engine) -> None:
    with pytest.raises(flink.FlinkError, match=r"Cannot find table .*no_such_table"):
        engine.sql("INSERT INTO no_such_table SELECT 1")
    with pytest.raises(flink.FlinkError, match=r"(?i)parse|encountered"):
        engine.sql("SELEC 1")
    assert engine.sql("SET 'table.local-time-zone' = 'UTC'")["ok"]  # and the engine still serves


def test_a_failing_job_fails_with_its_cause(stack, engine: flink.Engine) -> None:
    topics = _topics(stack.bootstrap)
    _fresh(engine, stack.bootstrap, topics, bounded=True)
    # A job that fails at run time, not at planning: a JSON sink write of a value the format cannot take is
    # planned fine; a division by zero in an integer expression fails the first row.
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    producer.produce(topics["stocktrade"], json.dumps({"quantity": 0, "price": 1}).encode(), timestamp=BASE)
    producer.flush(10)
    with pytest.raises(flink.FlinkError, match=r"(?s)Job execution failed.*/ by zero"):
        engine.sql(
            "INSERT INTO exposure_by_symbol_hourly SELECT symbol, CAST(price / quantity AS DOUBLE), 0.0, 0.0, 0, 1, "
            "CAST(NULL AS TIMESTAMP(3)), CAST(NULL AS TIMESTAMP(3)) FROM stocktrade",
            wait=True,
            timeout_s=120,
        )


def test_the_confluent_cloud_definitions_parse_on_flinks_own_parser(engine: flink.Engine) -> None:
    # Confluent Cloud is not reachable from here; what can be checked is that every generated statement is Flink SQL
    # that Flink 2.2 parses and its catalog accepts (DISTRIBUTED BY, metadata columns, PRIMARY KEY, MODIFY WATERMARK).
    # Confluent adds `$rowtime` (the record timestamp) and a system watermark to every table it creates (its
    # CREATE TABLE docs); they are modelled here on the sources, whose watermark the definitions then modify.
    engine.sql("CREATE DATABASE IF NOT EXISTS cloud_ddl")
    engine.sql("USE cloud_ddl")
    tables = ddl.load()
    try:
        for statement in ddl.cloud(tables):
            if statement.startswith("SET "):
                continue
            engine.sql(statement)
            name = statement.split("(", 1)[0].split()[-1]
            if statement.startswith("CREATE TABLE") and tables[name.strip("`")].role == "source":
                engine.sql(
                    f"ALTER TABLE {name} ADD (`$rowtime` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL, "
                    "WATERMARK FOR `$rowtime` AS `$rowtime`)"
                )
        for name, table in tables.items():
            (shown,) = engine.sql(f"SHOW CREATE TABLE {ddl.q(name)}")["rows"][0]
            for column, kind in table.columns:  # Flink spells STRING out
                assert f"{ddl.q(column)} {kind.replace('STRING', 'VARCHAR(2147483647)')}" in shown
            if table.role == "source":
                number, unit = (table.watermark_delay or "").split()
                assert f"WATERMARK FOR `$rowtime` AS `$rowtime` - INTERVAL '{number}' {unit}" in shown, shown
    finally:
        engine.sql("USE default_database")
