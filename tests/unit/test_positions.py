"""The exactly-once position decisions (settlement/core/positions.py) as tables, without a broker: skip, gap, step
and when a transaction is due. tests/unit/test_exactly_once.py runs the same decisions through the ledger's
admission; tests/integration/test_exactly_once.py keeps what needs a broker (fencing, transactions)."""

from __future__ import annotations

import pytest

from settlement.core.positions import Admission, Step, admit, commit_due, step


@pytest.mark.parametrize(
    ("position", "offsets", "expected"),
    [
        # skip: everything below the settled position was settled by a committed transaction
        (50, [40, 41, 49], Admission((), 50)),
        (50, [40, 41, 49, 50, 51], Admission((3, 4), 52)),
        # a batch handed back mid-way repeats offsets: each is admitted once
        (10, [10, 11, 12, 10, 11, 12, 13], Admission((0, 1, 2, 6), 14)),
        # at the position: nothing missing
        (0, [0, 1, 2], Admission((0, 1, 2), 3)),
        # gap: the first record lies beyond the position; the range before it is read from the source first
        (20, [30, 31], Admission((0, 1), 32, (20, 30))),
        (20, [15, 30, 31], Admission((1, 2), 32, (20, 30))),
        # holes between admitted records are markers or aborted records, never a gap
        (0, [0, 1, 2, 5, 6, 9], Admission((0, 1, 2, 3, 4, 5), 10)),
        (3, [5, 9], Admission((0, 1), 10, (3, 5))),
        # a single record
        (7, [7], Admission((0,), 8)),
        (7, [6], Admission((), 7)),
    ],
)
def test_admit(position: int, offsets: list[int], expected: Admission) -> None:
    assert admit(position, offsets) == expected


@pytest.mark.parametrize(
    ("admission", "reached", "last_offset", "expected"),
    [
        # no gap: the admission stands whatever was read
        (Admission((0, 1), 12), 0, 11, Step(Admission((0, 1), 12))),
        # the gap was read to its end (a marker-only gap reads empty and reaches its end too)
        (Admission((0, 1), 32, (20, 30)), 30, 31, Step(Admission((0, 1), 32, (20, 30)))),
        # step: the read stopped short; settle the gap to there, the batch and the rest go to the committer
        (Admission((0, 1), 902, (0, 900)), 100, 901, Step(Admission((), 100, (0, 100)), recover_upto=902)),
        (Admission((0,), 6_001, (1, 6_000)), 5_001, 6_000, Step(Admission((), 5_001, (1, 5_001)), 6_001)),
    ],
)
def test_step(admission: Admission, reached: int, last_offset: int, expected: Step) -> None:
    assert step(admission, reached, last_offset) == expected


@pytest.mark.parametrize(
    ("open_since", "now", "interval_s", "due"),
    [(None, 100.0, 0.3, False), (100.0, 100.2, 0.3, False), (100.0, 100.5, 0.5, True), (100.0, 500.0, 0.3, True)],
)
def test_commit_due(open_since: float | None, now: float, interval_s: float, due: bool) -> None:
    assert commit_due(open_since, now, interval_s) is due
