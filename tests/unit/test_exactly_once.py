"""The ledger's admission of a batch, without I/O: what is skipped, what is repaired first, and when a long gap
is left to later steps. The transactional behaviour itself runs against the real broker
(tests/integration/test_exactly_once.py)."""

from __future__ import annotations

from typing import Any

from settlement.core.deadline import Deadline
from settlement.core.records import InputRecord
from settlement.core.topics import Topics
from settlement.delivery.exactly_once import ExactlyOnce
from settlement.delivery.exactly_once.partitions import PartitionState


class FakeLedger:
    """Serves gap reads from a list of offsets the source holds (others are markers or aborted records)."""

    def __init__(self, source_offsets: list[int], limit: int = 5_000) -> None:
        self.offsets = source_offsets
        self.limit = limit
        self.reads: list[tuple[int, int]] = []
        self.queued: list[int] = []

    @property
    def source(self) -> FakeLedger:
        return self  # the ledger's source reads, served from the list

    def read_range(self, topic: str, partition: int, start: int, end: int, deadline: Deadline) -> tuple[list[Any], int]:
        self.reads.append((start, end))
        wanted = [o for o in self.offsets if start <= o < end]
        taken = wanted[: self.limit]
        reached = end if len(wanted) <= self.limit else wanted[self.limit]
        return [_record(o) for o in taken], reached

    def queue_recovery(self, part: PartitionState, upto: int) -> None:
        self.queued.append(upto)


def _record(offset: int) -> InputRecord:
    return InputRecord(b"User_1", b"v", "user_trades", 0, offset, 1)


def _admit(ledger: FakeLedger, position: int, offsets: list[int]) -> tuple[list[int], int | None, list[int]]:
    part = PartitionState("user_trades", 0)
    part.position = part.committed = position
    eo = ExactlyOnce(ledger, Topics("s", "d"), delivery_timeout_s=5.0)  # type: ignore[arg-type]
    records = [_record(o) for o in offsets]
    admitted, reached, gap = eo._admit(part, records, list(range(len(records))), deadline=Deadline(0.0))
    return [records[i].offset for i in admitted], reached, [r.offset for r in gap]


def test_records_below_the_position_are_skipped_and_nothing_is_read() -> None:
    ledger = FakeLedger(list(range(100)))
    assert _admit(ledger, 50, [40, 41, 49, 50, 51]) == ([50, 51], 52, [])
    assert ledger.reads == []


def test_a_batch_handed_back_mid_way_holds_its_records_twice_and_each_is_admitted_once() -> None:
    assert _admit(FakeLedger([]), 10, [10, 11, 12, 10, 11, 12, 13]) == ([10, 11, 12, 13], 14, [])


def test_a_gap_before_the_batch_is_read_from_the_source_and_settled_first() -> None:
    ledger = FakeLedger(list(range(100)))
    assert _admit(ledger, 20, [30, 31]) == ([30, 31], 32, list(range(20, 30)))
    assert ledger.reads == [(20, 30)]


def test_gaps_inside_a_batch_are_markers_and_are_not_read() -> None:
    ledger = FakeLedger([0, 1, 2, 5, 6, 9])
    assert _admit(ledger, 0, [0, 1, 2, 5, 6, 9]) == ([0, 1, 2, 5, 6, 9], 10, [])
    assert ledger.reads == []


def test_a_marker_only_gap_reads_empty_and_the_batch_follows() -> None:
    ledger = FakeLedger([0, 1, 2, 5])  # 3 and 4: a commit marker and an aborted record
    assert _admit(ledger, 3, [5]) == ([5], 6, [])


def test_a_gap_too_long_for_one_batch_is_settled_in_steps_and_the_rest_queued() -> None:
    ledger = FakeLedger(list(range(1000)), limit=100)
    admitted, reached, gap = _admit(ledger, 0, [900, 901])
    assert (admitted, reached, gap) == ([], 100, list(range(100)))
    assert ledger.queued == [902]  # the committer carries on to the end of this batch
