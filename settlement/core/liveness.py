"""Which source partitions the repair must take over: pure decisions over what Kafka shows of each partition,
no I/O and no clock of its own (table-tested in tests/unit/test_liveness.py).

Three offsets tell a partition's state (all from Kafka, so any process can read them, on any instance):

- `settled`: the ledger's settled position, committed in `<group>.settled` inside the transaction that wrote
  the outputs (None: the ledger has not begun this partition);
- `committed`: the trigger group's committed offset, which the host moves past a batch once the function
  returned (None: nothing committed yet);
- `end`: the partition's high watermark.

`committed - settled` is settlement lag: records the host will not deliver again whose outputs are not
committed. A live holder keeps it at its open transaction (the commit interval) and moves `settled` on; a holder
that died or froze leaves it there for good, and on Flex nothing wakes the trigger again (its scaler sees no
lag). So a partition is taken over when it is *behind* (`settled` below `end`) and *stalled* (the same
`settled` and `committed` seen at least `stall_s` apart): with lag the gap is settled. Without lag (`settled ==
committed`) the records beyond the trigger's offset are *waiting*, and waiting records that nothing moves for
twice as long are drained: the partition is taken, which aborts a dead holder's open transaction at once instead
of at the coordinator's timeout (so read_committed readers of the output topics stop waiting for it), and the
records up to the partition's last stable offset are settled. A live trigger may hold them without ever
delivering them: the Kafka extension drops a batch it fails to invoke (tracing on, a `traceparent` header .NET
refuses) and, with no later batch on the partition to commit past it, neither delivers those records again nor
shows them as lag of ours. Should the trigger deliver them after all, the ledger finds them settled and skips
them. Where the trigger group has committed nothing (a new group, or the HTTP entry path, whose connector has a
group of its own) the partition is only fenced: its records are that path's to deliver. A partition whose
positions move is left alone: its holder is making progress. Neither draining nor fencing happens while the
trigger group rebalances: then every partition stands still for a while with its holders alive (an eager
rebalance revokes them all), and aborting a live holder's open transaction would only make it settle its last
batches again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    IDLE = "idle"  # nothing behind
    UNKNOWN = "unknown"  # the ledger has not begun the partition: its first batch pins it
    WATCH = "watch"  # behind, but not seen still for long enough (or moving)
    REPAIR = "repair"  # stalled with lag: take it, settle [settled, committed), commit
    DRAIN = "drain"  # stalled without lag, records waiting: take it, settle [settled, last stable offset), commit
    FENCE = "fence"  # stalled, the trigger group committed nothing: take it (aborting a holder's transaction) only


@dataclass(frozen=True)
class Offsets:
    """One partition's three offsets, read at one moment."""

    settled: int | None
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        """Records the host moved past that are not settled."""
        if self.settled is None or self.committed is None:
            return 0
        return max(0, self.committed - self.settled)

    @property
    def waiting(self) -> int:
        """Records the trigger group has not committed past yet (the trigger's own lag, up to the end)."""
        return max(0, self.end - (self.committed or 0))

    @property
    def behind(self) -> bool:
        return self.settled is not None and self.settled < max(self.end, self.committed or 0)


@dataclass(frozen=True)
class Sighting:
    """Offsets first seen unchanged at `since`, and the settled position first seen where it is at
    `settled_since` (monotonic seconds)."""

    offsets: Offsets
    since: float
    settled_since: float

    def same(self, offsets: Offsets) -> bool:
        """The same position and trigger offset (the end may grow: records waiting do not make progress)."""
        return (self.offsets.settled, self.offsets.committed) == (offsets.settled, offsets.committed)

    def lag_s(self, now: float) -> float:
        """Settlement lag in seconds: how long the settled position has stood behind the trigger's offset (0 when
        it is not behind). What the bound is about, read from the sightings alone: no record is fetched."""
        return max(0.0, now - self.settled_since) if self.offsets.lag else 0.0


def sight(previous: Sighting | None, offsets: Offsets, now: float) -> Sighting:
    """What to remember of a partition after reading `offsets` at `now`."""
    if previous is None:
        return Sighting(offsets, now, now)
    settled_since = previous.settled_since if previous.offsets.settled == offsets.settled else now
    return Sighting(offsets, previous.since if previous.same(offsets) else now, settled_since)


def action_for(sighting: Sighting, now: float, stall_s: float, rebalancing: bool = False) -> Action:
    """The repair's action for one partition, from what was seen of it (and whether the trigger group is in a
    rebalance)."""
    offsets = sighting.offsets
    if offsets.settled is None:
        return Action.UNKNOWN
    if not offsets.behind:
        return Action.IDLE
    still = now - sighting.since
    if offsets.lag:
        return Action.REPAIR if still >= stall_s else Action.WATCH
    if still < NO_LAG_FACTOR * stall_s or rebalancing:
        return Action.WATCH
    return Action.FENCE if offsets.committed is None else Action.DRAIN


TAKEN = frozenset({Action.REPAIR, Action.DRAIN, Action.FENCE})  # the actions that take the partition over


def stall_after_s(commit_interval_s: float) -> float:
    """How long a partition's positions must stand still before it is taken over: a live holder commits its
    open transaction within the commit interval of its last batch, so anything longer than that plus a margin
    (one slow batch's planning, a coordinator round trip) is a holder that stopped. Taking a live holder's
    partition is safe (fencing keeps exactly-once) but costs it a re-take: the margin keeps that rare."""
    return commit_interval_s + STALL_MARGIN_S


STALL_MARGIN_S = 5.0
NO_LAG_FACTOR = 2.0  # draining or fencing (no lag to settle) waits this many stall periods
