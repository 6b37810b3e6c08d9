"""The exactly-once position decisions (settlement/core/positions.py) as tables, without a broker: skip, gap, step
and when a transaction is due. tests/unit/test_exactly_once.py runs the same decisions through the exactly-once
delivery; tests/integration/test_exactly_once.py keeps what needs a broker (fencing, transactions)."""

from __future__ import annotations

import pytest

from settlement.core.positions import Step, Unsettled, commit_due, step, unsettled


@pytest.mark.parametrize(
    ("position", "offsets", "expected"),
    [
        # skip: everything below the settled position was settled by a committed transaction
        (50, [40, 41, 49], Unsettled((), 50)),
        (50, [40, 41, 49, 50, 51], Unsettled((3, 4), 52)),
        # a batch handed back mid-way repeats offsets: each is settled once
        (10, [10, 11, 12, 10, 11, 12, 13], Unsettled((0, 1, 2, 6), 14)),
        # at the position: nothing missing
        (0, [0, 1, 2], Unsettled((0, 1, 2), 3)),
        # gap: the first record lies beyond the position; the range before it is read from the source first
        (20, [30, 31], Unsettled((0, 1), 32, (20, 30))),
        (20, [15, 30, 31], Unsettled((1, 2), 32, (20, 30))),
        # holes between the records to settle are markers or aborted records, never a gap
        (0, [0, 1, 2, 5, 6, 9], Unsettled((0, 1, 2, 3, 4, 5), 10)),
        (3, [5, 9], Unsettled((0, 1), 10, (3, 5))),
        # a single record
        (7, [7], Unsettled((0,), 8)),
        (7, [6], Unsettled((), 7)),
    ],
)
def test_unsettled(position: int, offsets: list[int], expected: Unsettled) -> None:
    assert unsettled(position, offsets) == expected


@pytest.mark.parametrize(
    ("unsettled", "reached", "last_offset", "expected"),
    [
        # no gap: all of it stands whatever was read
        (Unsettled((0, 1), 12), 0, 11, Step(Unsettled((0, 1), 12))),
        # the gap was read to its end (a marker-only gap reads empty and reaches its end too)
        (Unsettled((0, 1), 32, (20, 30)), 30, 31, Step(Unsettled((0, 1), 32, (20, 30)))),
        # step: the read stopped short; settle the gap to there, the batch and the rest go to the committer
        (Unsettled((0, 1), 902, (0, 900)), 100, 901, Step(Unsettled((), 100, (0, 100)), recover_upto=902)),
        (Unsettled((0,), 6_001, (1, 6_000)), 5_001, 6_000, Step(Unsettled((), 5_001, (1, 5_001)), 6_001)),
    ],
)
def test_step(unsettled: Unsettled, reached: int, last_offset: int, expected: Step) -> None:
    assert step(unsettled, reached, last_offset) == expected


@pytest.mark.parametrize(
    ("open_since", "now", "interval_s", "due"),
    [(None, 100.0, 0.3, False), (100.0, 100.2, 0.3, False), (100.0, 100.5, 0.5, True), (100.0, 500.0, 0.3, True)],
)
def test_commit_due(open_since: float | None, now: float, interval_s: float, due: bool) -> None:
    assert commit_due(open_since, now, interval_s) is due
