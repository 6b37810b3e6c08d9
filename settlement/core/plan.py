"""A batch's plan: each input record's fate and its outputs before anything is produced, and what became of the
batch. Pure data shared by both delivery strategies (at-least-once and the exactly-once ledger), so neither imports
the other and the processor that builds a plan is not needed to read one."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import NamedTuple, Protocol

from settlement.core.deadline import Deadline
from settlement.core.errors import PoisonRecord
from settlement.core.records import InputRecord
from settlement.core.rules import Verdict

SETTLED = "settled"
DEAD_LETTERED = "dead-lettered"


class RecordResult(NamedTuple):
    """What became of one input record; the HTTP path returns these aligned with its request."""

    coordinates: str
    outcome: str  # SETTLED or DEAD_LETTERED
    disposition: str | None
    reason: str


Outcome = Verdict | PoisonRecord  # a record's fate: a settlement's (shared) verdict, or why it is poison


class Output(NamedTuple):
    """A record produced on its own (`produce`, with headers): dead letters, and settlements under tracing.
    `timestamp` is the record's Kafka timestamp in epoch ms, None for the producer's clock (see `Plain`)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int | None = None


# A settlement without headers: (key, value, Kafka timestamp in epoch ms). A settlement's record timestamp is its
# trade's, as ksqlDB stamps a derived record with its source's ROWTIME: the analysis over the settlements takes
# event time from the record timestamp (Flink's `$rowtime` and ksqlDB's `ROWTIME` alike), so windows reflect when
# trades happened and a replay lands in the same windows. Dead letters keep the producer's clock: their retention
# counts from the failure, and the redrive's `--since` reads that time.
Plain = tuple[bytes | None, bytes | None, int]


class Plan:
    """A batch's outputs before any is produced, kept as parallel lists so that a settlement costs no object
    of its own beyond its `Plain` tuple (profiling showed an object per record costing as much as decoding it).
    `outcomes[i]` is input record i's fate."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.plain_indexes: list[int] = []  # settlements without headers, handed over in one call
        self.plain: list[Plain] = []
        self.single: dict[int, Output] = {}  # everything else, by input index

    @functools.cached_property
    def plain_by_index(self) -> dict[int, Plain]:
        """The plain settlements by input index (built once, after planning, for the exactly-once path,
        which writes a batch one partition at a time)."""
        return dict(zip(self.plain_indexes, self.plain, strict=True))


class BatchResult:
    """What became of a batch's records, in input order."""

    def __init__(self, records: Sequence[InputRecord], outcomes: list[Outcome]) -> None:
        self._records = records
        self._outcomes = outcomes
        self.dispositions: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        for outcome, n in Counter(outcomes).items():  # counted in C: verdicts are a handful of shared constants
            if isinstance(outcome, Verdict):
                self.dispositions[outcome.disposition] += n
            else:
                self.reasons[outcome.kind.value] += n
        self.settled = sum(self.dispositions.values())
        self.dead_lettered = len(outcomes) - self.settled

    def settled_timestamps(self) -> Iterator[int | None]:
        """The settled records' timestamps, lazily: telemetry reads them only when it records latency."""
        return (r.timestamp_ms for r, o in zip(self._records, self._outcomes, strict=True) if isinstance(o, Verdict))

    @property
    def results(self) -> list[RecordResult]:
        return [
            RecordResult(r.coordinates, SETTLED, o.disposition, o.reason)
            if isinstance(o, Verdict)
            else RecordResult(r.coordinates, DEAD_LETTERED, None, o.kind.value)
            for r, o in zip(self._records, self._outcomes, strict=True)
        ]


# Plans (some of) a batch's records; the coordinates given are to be dead-lettered shrunk (refused as too large).
PlanRecords = Callable[[Sequence[InputRecord], Collection[str]], Plan]


class Delivery(Protocol):
    """The one seam between a batch and Kafka: at-least-once (settlement/delivery/at_least_once.py) or exactly-once
    (settlement/delivery/exactly_once/). Each plans through `plan_records` when it is ready to write, and returns
    every record's outcome once its output is acknowledged (or, exactly-once, in the partition's open transaction).
    The processor (settlement/delivery/batch.py) knows a delivery through this seam only."""

    def settle(
        self, records: Sequence[InputRecord], plan_records: PlanRecords, deadline: Deadline, attempts: int = ...
    ) -> list[Outcome]: ...

    def close(self) -> None:
        """Release what the delivery holds (exactly-once: commit what is open, release the producers)."""
        ...


class SettleBatch(Protocol):
    """The whole batch path (plan, deliver, telemetry) as the processor runs it: what a delivery's own background
    work settles records through (exactly-once: a lost range settled again, the repair's take-over), handed to it
    by the wiring so that no delivery imports the processor. `attempts` bounds how often a fenced partition is
    taken again (the repair: once)."""

    def __call__(self, records: Sequence[InputRecord], *, attempts: int | None = None) -> object: ...
