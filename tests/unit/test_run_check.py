"""The main job's verdict: outputs accounted for by source identity, and a record written twice only where
the host delivered it twice (at-least-once redelivery), never an unexplained duplicate or a loss."""

from __future__ import annotations

import math

import pytest
from confluent_kafka import Message

from localrun.experiments.accounting import (
    LATENCY_BUCKET_MS,
    Coverage,
    bucket_percentile,
    coverage,
    delivered_twice,
    latency_buckets,
    unexplained,
)
from localrun.experiments.main import _check
from localrun.experiments.probes import Measurements
from localrun.platform.host import HostStats
from localrun.platform.instance import batch_ranges
from settlement.core.deadletter import SOURCE_OFFSET, SOURCE_PARTITION
from settlement.schemas.trade_settlement_pb2 import TradeSettlement


def _settled(partition: int, offset: int) -> TradeSettlement:
    return TradeSettlement(source_topic="user_trades", source_partition=partition, source_offset=offset)


def _dead(partition: int, offset: int) -> Message:
    headers = [(SOURCE_PARTITION, str(partition).encode()), (SOURCE_OFFSET, str(offset).encode())]
    return Message(topic="dlq", value=b"", headers=headers)


def _covered(duplicated: set[tuple[int, int]], duplicates: int, lost: int) -> Coverage:
    return Coverage(100, 0, frozenset(duplicated), duplicates, lost)


def test_coverage_counts_by_identity_not_by_count() -> None:
    settlements = [_settled(0, 0), _settled(0, 1), _settled(0, 1), _settled(1, 0)]
    # 4 settlements + 1 dead letter = 5 = inputs, yet (0, 1) is written twice and (1, 1) never.
    counted = coverage(5, settlements, [_dead(0, 2)])
    assert counted == Coverage(settled=4, dead_lettered=1, duplicated=frozenset({(0, 1)}), duplicates=1, lost=1)


def test_a_record_both_settled_and_dead_lettered_is_a_duplicate() -> None:
    assert coverage(1, [_settled(0, 0)], [_dead(0, 0)]) == Coverage(1, 1, frozenset({(0, 0)}), 1, 0)


def test_batch_ranges_are_one_range_per_partition() -> None:
    assert batch_ranges([(2, 10), (0, 5), (2, 11), (0, 6), (2, 12)]) == [(0, 5, 6), (2, 10, 12)]


def test_a_batch_that_reads_a_partition_again_after_a_rebalance_reports_both_deliveries() -> None:
    # Partition 2 was revoked and handed back while the batch filled: the consumer restarted at the commit (40).
    ranges = batch_ranges([(2, 40), (2, 41), (2, 42), (2, 43), (2, 40), (2, 41), (2, 42)])
    assert ranges == [(2, 40, 42), (2, 40, 43)]
    assert delivered_twice(ranges) == [(2, 40, 42)]


@pytest.mark.parametrize(
    ("ranges", "twice"),
    [
        ([(0, 0, 63), (0, 64, 127)], []),  # adjacent batches: nothing twice
        ([(0, 0, 63), (0, 40, 103)], [(0, 40, 63)]),  # a batch redelivered from a commit inside the last one
        ([(0, 0, 9), (0, 0, 9), (0, 0, 9)], [(0, 0, 9)]),  # three times counts as twice
        ([(0, 0, 9), (1, 0, 9), (0, 5, 14), (1, 20, 29)], [(0, 5, 9)]),  # partitions are separate
        ([(0, 0, 9), (0, 0, 4), (0, 5, 9)], [(0, 0, 9)]),  # touching overlaps merge into one range
    ],
)
def test_delivered_twice_finds_overlapping_deliveries(
    ranges: list[tuple[int, int, int]], twice: list[tuple[int, int, int]]
) -> None:
    assert delivered_twice(ranges) == twice


def test_unexplained_duplicates_are_those_outside_every_redelivered_range() -> None:
    assert unexplained({(0, 5), (0, 70), (1, 5)}, [(0, 0, 63)]) == [(0, 70), (1, 5)]


@pytest.mark.parametrize(
    ("counted", "redelivered", "code"),
    [
        (_covered(set(), 0, 0), [], 0),
        (_covered({(0, 3), (0, 4)}, 2, 0), [(0, 0, 63)], 0),  # a batch redelivered after a rebalance
        (_covered({(0, 3), (1, 4)}, 2, 0), [(0, 0, 63)], 1),  # (1, 4) was delivered once: a defect
        (_covered(set(), 0, 1), [], 1),  # a loss is never OK
        (_covered({(0, 3)}, 1, 1), [(0, 0, 63)], 1),
    ],
)
def test_check_accepts_only_duplicates_the_host_delivered_twice(
    counted: Coverage, redelivered: list[tuple[int, int, int]], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _check(100, counted, redelivered) == code
    out = capsys.readouterr().out
    assert ("OK" if code == 0 else "MISMATCH") in out
    if counted.duplicates:
        assert "deduplicate on source_topic" in out


def test_the_host_counts_batches_and_the_measurements_keep_every_batch_range() -> None:
    stats, measurements = HostStats(), Measurements()
    base = {"kind": "batch", "invocations": 1, "succeeded": True, "skipped": False, "aborted": False}
    common = {**base, "channel_wait_s": 0.0, "busy_s": 0.1, "pid": 1, "instance": "a"}
    for report in (
        {**common, "records": 64, "stored": True, "ranges": [(0, 0, 63)], "latency": {0: 60, 3: 4}},
        {**common, "records": 64, "stored": False, "ranges": [(0, 64, 100), (1, 0, 26)], "latency": {3: 64}},
    ):
        stats.add(report)
        measurements(report)
    assert (stats.batches, stats.records, stats.store_failures) == (2, 128, 1)
    assert measurements.ranges == [(0, 0, 63), (0, 64, 100), (1, 0, 26)]
    assert measurements.latency == {0: 60, 3: 68}


def test_latency_buckets_and_their_percentiles() -> None:
    # 100 records acknowledged at t=1000 ms: 90 of them 2 ms old, 9 of them 40 ms old, one 997 ms old.
    stamps = [998] * 90 + [960] * 9 + [3]
    counts = latency_buckets(stamps, 1000.0)
    assert counts == {0: 90, 8: 9, 199: 1}
    assert sum(counts.values()) == 100
    assert bucket_percentile(counts, 0.5) == LATENCY_BUCKET_MS  # upper edge of the first bucket
    assert bucket_percentile(counts, 0.95) == 45.0
    assert bucket_percentile(counts, 1.0) == 1000.0
    assert math.isnan(bucket_percentile({}, 0.5))
