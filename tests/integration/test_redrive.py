"""Dead letters redriven against the real broker: dead-lettered under SETTLEMENT_MAX_RECORD_BYTES=100, redriven
with --reason oversize after the limit is raised, settled; an interrupted redrive resumes without duplicates or
gaps; a second redrive sends nothing; a record redriven too often is refused."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

import function_app
from scripts.dlq_redrive import REDRIVE_COUNT, REDRIVE_SOURCE_OFFSET, Filters, main, progress_group, redrive
from settlement.core import deadletter
from settlement.schemas.user_trade_pb2 import UserTrade
from tests.integration.pipeline import Pipeline, as_events, decode_settlements
from tests.kafka_helpers import drain, produce

pytestmark = pytest.mark.integration


def _trade(i: int, account: str) -> UserTrade:
    return UserTrade(regionid="Region_1", quantity=10 + i, symbol="ZVV", price=5, account=account, side="BUY")


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_oversize_dead_letters_are_redriven_and_settle_exactly_once(
    pipeline: Pipeline, monkeypatch, capsys, guarantee: str
) -> None:
    monkeypatch.setenv("SETTLEMENT_MAX_RECORD_BYTES", "100")
    monkeypatch.setenv("SETTLEMENT_DELIVERY_GUARANTEE", guarantee)
    function_app.root.reset()
    ser, ctx = pipeline.serializer()
    records = [(f"User_{i}".encode(), ser(_trade(i, "A" * 120), ctx)) for i in range(5)]  # over 100 bytes
    records += [(b"User_9", b"not protobuf"), (b"User_8", ser(_trade(9, "B"), ctx))]
    produce(pipeline.bootstrap, pipeline.source, records, partition=0)
    function_app.settle_user_trades(as_events(drain(pipeline.bootstrap, pipeline.source, 7)))
    dead = drain(pipeline.bootstrap, pipeline.dlq, 6)
    reasons = sorted(dict(m.headers() or [])[deadletter.REASON] for m in dead)
    assert reasons == [b"bad-magic-byte"] + [b"oversize"] * 5

    monkeypatch.setenv("SETTLEMENT_MAX_RECORD_BYTES", "65536")  # the cause is fixed
    function_app.root.reset()
    env = {"KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap, "DEAD_LETTER_TOPIC": pipeline.dlq}
    env["USER_TRADES_TOPIC"] = pipeline.source
    oversize = Filters(reasons=frozenset({"oversize"}))
    group = progress_group(oversize, pipeline.source)

    dry = redrive(env, oversize, group=group, dry_run=True)
    assert dict(dry.sent) == {"oversize": 5} and dry.filtered_out == 1
    assert len(drain(pipeline.bootstrap, pipeline.source, 7, timeout_s=2)) == 7  # nothing sent

    first = redrive(env, oversize, group=group, batch=2, stop_after=1)  # interrupted after one transaction
    assert sum(first.sent.values()) == 2
    rest = redrive(env, oversize, group=group, batch=2)
    assert sum(rest.sent.values()) == 3
    source = drain(pipeline.bootstrap, pipeline.source, 12)
    redriven = [m for m in source if dict(m.headers() or []).get(REDRIVE_COUNT) == b"1"]
    assert len(source) == 12 and len(redriven) == 5  # no duplicates, no gaps
    assert sorted(int(dict(m.headers())[REDRIVE_SOURCE_OFFSET]) for m in redriven) == sorted(
        int(dict(m.headers())[deadletter.SOURCE_OFFSET]) for m in dead if b"oversize" in dict(m.headers()).values()
    )
    assert {m.value() for m in redriven} == {v for _, v in records[:5]}  # the original bytes

    function_app.settle_user_trades(as_events(redriven))
    settled = decode_settlements(pipeline, drain(pipeline.bootstrap, pipeline.settlements, 6))
    assert sorted(s.user for s in settled) == ["User_0", "User_1", "User_2", "User_3", "User_4", "User_8"]

    assert main(["--reason", "oversize"], env=env) == 0  # the same redrive again: nothing left to send
    out = capsys.readouterr().out
    assert "sent" not in out.split("left")[0] and "1  not matching the filters" not in out


def test_a_record_redriven_too_often_is_refused(pipeline: Pipeline) -> None:
    p = Producer({"bootstrap.servers": pipeline.bootstrap})
    p.produce(
        pipeline.dlq,
        key=b"User_1",
        value=b"\x00\x00\x00\x00\x01\x00",
        headers=[(deadletter.REASON, b"unknown-schema-id"), (REDRIVE_COUNT, b"3"), (deadletter.SOURCE_OFFSET, b"7")],
    )
    p.flush(10)
    env = {"KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap, "DEAD_LETTER_TOPIC": pipeline.dlq}
    env["USER_TRADES_TOPIC"] = pipeline.source
    report = redrive(env, Filters(), group=progress_group(Filters(), pipeline.source), max_redrives=3)
    assert dict(report.refused_loop) == {"unknown-schema-id": 1} and not report.sent
    assert drain(pipeline.bootstrap, pipeline.source, 0, timeout_s=1) == []
