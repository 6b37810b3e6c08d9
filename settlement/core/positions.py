"""The exactly-once position decisions, pure: given a partition's settled position and a batch's offsets for it,
which records to skip, which source range is missing before them (the gap), and how far one batch goes when the
gap is too long (the step). The ledger (settlement/delivery/exactly_once/) does the reads and the transactions these
decide.

Why apart from the I/O: every exactly-once guarantee rests on these few comparisons, and here each is
table-tested (tests/unit/test_positions.py) without a broker or a fake client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Unsettled:
    """One partition's share of a batch that is not settled yet, measured against its settled position."""

    indexes: tuple[int, ...]  # indexes (into the offsets given) of the records to settle, in order
    position: int  # the settled position once they are: one past the last offset to settle
    gap: tuple[int, int] | None = None  # [start, end): source offsets the host moved past, to settle first


def unsettled(position: int, offsets: Sequence[int]) -> Unsettled:
    """Skip what lies below the position (settled by a committed transaction, or earlier in this one: a batch
    handed back mid-way repeats offsets); a first record beyond it leaves a gap to read from the source. Gaps
    between the records to settle are not gaps: the host's consumer fetched them in sequence, so they hold only
    transaction markers or aborted records."""
    indexes: list[int] = []
    gap: tuple[int, int] | None = None
    for i, offset in enumerate(offsets):
        if offset < position:
            continue  # skip
        if offset > position and not indexes:
            gap = (position, offset)
        indexes.append(i)
        position = offset + 1
    return Unsettled(tuple(indexes), position, gap)


@dataclass(frozen=True)
class Step:
    """What a batch settles when its gap was read only up to `reached` (a read stops at the step's limit)."""

    unsettled: Unsettled
    recover_upto: int | None = None  # the rest, queued for the committer: up to one past the batch's last offset


def step(unsettled: Unsettled, reached: int, last_offset: int) -> Step:
    """All of `unsettled` if the gap was read to its end; otherwise only the gap up to `reached`, committed as
    a step of its own, the batch's records left with the rest of the range for the committer to settle."""
    if unsettled.gap is None or reached >= unsettled.gap[1]:
        return Step(unsettled)
    start = unsettled.gap[0]
    return Step(Unsettled((), reached, (start, reached)), recover_upto=last_offset + 1)


def commit_due(open_since: float | None, now: float, interval_s: float) -> bool:
    """An open transaction is committed once it has been open `interval_s` (by the next batch or the committer)."""
    return open_since is not None and now - open_since >= interval_s
