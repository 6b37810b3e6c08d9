"""The main job's verdict: outputs accounted for by source identity, and duplicates only where the host
redelivered a batch (at-least-once), never unexplained ones or losses."""

from __future__ import annotations

import pytest
from confluent_kafka import Message

from localrun.host import HostStats
from localrun.kafka import Coverage, coverage
from localrun.main import _check
from settlement.deadletter import SOURCE_OFFSET, SOURCE_PARTITION
from settlement.schemas.trade_settlement_pb2 import TradeSettlement


def _settled(partition: int, offset: int) -> TradeSettlement:
    return TradeSettlement(source_topic="user_trades", source_partition=partition, source_offset=offset)


def _dead(partition: int, offset: int) -> Message:
    headers = [(SOURCE_PARTITION, str(partition).encode()), (SOURCE_OFFSET, str(offset).encode())]
    return Message(topic="dlq", value=b"", headers=headers)


def test_coverage_counts_by_identity_not_by_count() -> None:
    settlements = [_settled(0, 0), _settled(0, 1), _settled(0, 1), _settled(1, 0)]
    # 4 settlements + 1 dead letter = 5 = inputs, yet (0, 1) is written twice and (1, 1) never.
    counted = coverage(5, settlements, [_dead(0, 2)])
    assert counted == Coverage(settled=4, dead_lettered=1, duplicates=1, lost=1)


def test_a_record_both_settled_and_dead_lettered_is_a_duplicate() -> None:
    assert coverage(1, [_settled(0, 0)], [_dead(0, 0)]) == Coverage(1, 1, 1, 0)


@pytest.mark.parametrize(
    ("counted", "redelivered", "code"),
    [
        (Coverage(10, 0, 0, 0), 0, 0),
        (Coverage(74, 0, 64, 0), 64, 0),  # one batch of 64 redelivered after a rebalance
        (Coverage(75, 0, 65, 0), 64, 1),  # one duplicate more than redelivery explains
        (Coverage(9, 0, 0, 1), 0, 1),  # a loss is never OK
        (Coverage(73, 0, 64, 1), 64, 1),
    ],
)
def test_check_accepts_only_duplicates_the_host_redelivered(
    counted: Coverage, redelivered: int, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _check(10, counted, redelivered) == code
    out = capsys.readouterr().out
    assert ("OK" if code == 0 else "MISMATCH") in out
    if counted.duplicates and code == 0:
        assert "deduplicate on source_topic" in out


def test_host_stats_count_records_of_batches_whose_offsets_were_not_stored() -> None:
    stats = HostStats()
    base = {"invocations": 1, "succeeded": True, "skipped": False, "aborted": False, "channel_wait_s": 0.0}
    stats.add({**base, "records": 64, "stored": True, "busy_s": 0.1, "pid": 1, "coords": [], "instance": "a"})
    stats.add({**base, "records": 50, "stored": False, "busy_s": 0.1, "pid": 1, "coords": [], "instance": "a"})
    stats.add(
        {**base, "records": 7, "stored": False, "aborted": True, "busy_s": 0.1, "pid": 1, "coords": [], "instance": "a"}
    )
    assert (stats.store_failures, stats.unstored_records) == (1, 57)
