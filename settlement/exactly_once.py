"""A batch settled through the exactly-once ledger (settlement/ledger.py): per source partition, skip what is
settled, repair what the host skipped, and write the rest inside the partition's open transaction.

Every record is planned (decoded, settled, encoded) before anything is produced, as on the at-least-once path,
so a registry outage fails the batch with nothing written, and a record that is skipped as already settled
still gets its result (the HTTP path answers a re-posted body with the same per-record results: the rules are
deterministic). Whatever the host does after a failure (retry the batch, or skip past it), the partition's
next batch starts at or beyond the settled position, and what lies between is repaired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from settlement.ledger import Fenced, Ledger, PartitionLedger
from settlement.producer import DeliveryError, DeliveryTracker, RecordTooLarge
from settlement.records import InputRecord

if TYPE_CHECKING:
    from settlement.batch import Outcome, Plan, Topics

log = logging.getLogger("settlement.exactly_once")

Planner = Callable[[Sequence[InputRecord], Collection[str]], "Plan"]
_ATTEMPTS = 3  # fenced, or a record refused as too large: take the partition again and re-plan at most this often


class ExactlyOnce:
    def __init__(self, ledger: Ledger, topics: Topics) -> None:
        self._ledger = ledger
        self._topics = topics
        self._shrink: set[str] = set()  # coordinates the broker refused as too large: dead-lettered shrunk
        self._aligned: dict[str, bool] = {}

    def settle(self, records: Sequence[InputRecord], plan_records: Planner, deadline: float) -> list[Outcome]:
        """Each record's outcome, its outputs committed (or in an open transaction) exactly once."""
        by_partition: dict[tuple[str, int], list[int]] = {}
        for i, record in enumerate(records):
            by_partition.setdefault((record.topic, record.partition), []).append(i)
        ledger = self._ledger
        with ledger.holding(list(by_partition)) as parts:
            for part in parts:
                self._hold(part, deadline)
            plan = plan_records(records, self._shrink)
            for part in parts:
                indexes = by_partition[(part.topic, part.partition)]
                plan = self._settle_partition(part, records, indexes, plan, plan_records, deadline)
        return plan.outcomes

    def _settle_partition(
        self,
        part: PartitionLedger,
        records: Sequence[InputRecord],
        indexes: list[int],
        plan: Plan,
        plan_records: Planner,
        deadline: float,
    ) -> Plan:
        """Settle one partition's share of the batch; returns the plan (re-made if a record had to shrink)."""
        ledger = self._ledger
        for attempt in range(1, _ATTEMPTS + 1):
            self._hold(part, deadline)
            admitted, position, gap = self._admit(part, records, indexes, deadline)
            if not admitted and not gap:
                return plan  # everything was settled already (a redelivery): nothing to write
            gap_plan = plan_records(gap, self._shrink) if gap else None
            if gap:
                log.warning(
                    "%s[%d]: repairing %d record(s) the host moved past, offsets %d..%d",
                    part.topic,
                    part.partition,
                    len(gap),
                    gap[0].offset,
                    gap[-1].offset,
                )
            try:
                refused = self._produce(part, records, admitted, plan, gap, gap_plan, deadline)
            except Fenced as exc:
                log.warning("%s; taking the partition again (attempt %d)", exc, attempt)
                continue
            if refused:
                self._shrink.update(refused)
                if any(records[i].coordinates in refused for i in admitted):
                    plan = plan_records(records, self._shrink)
                continue
            part.position = position
            if ledger.due(part):
                try:
                    ledger.commit(part, deadline)
                except Fenced as exc:
                    log.warning("%s at commit; taking the partition again (attempt %d)", exc, attempt)
                    continue
            return plan
        raise DeliveryError(f"{part.topic}[{part.partition}]: not settled after {_ATTEMPTS} attempts")

    def _hold(self, part: PartitionLedger, deadline: float) -> None:
        """Hold the partition, and give it a settled position if the ledger has none yet."""
        self._ledger.ready(part, deadline)
        if part.committed is None:
            self._ledger.pin(part, deadline)

    def _admit(
        self, part: PartitionLedger, records: Sequence[InputRecord], indexes: list[int], deadline: float
    ) -> tuple[list[int], int | None, list[InputRecord]]:
        """The batch's records still to settle, the position after them, and the source records of the gap
        between the settled position and the first of them."""
        position = part.position
        admitted: list[int] = []
        gap: list[InputRecord] = []
        for i in indexes:
            offset = records[i].offset
            assert position is not None  # held: pinned if it had none
            if offset < position:
                continue  # settled by a committed transaction, or earlier in this one
            if offset > position and not admitted:
                gap, reached = self._ledger.read_gap(part, position, offset, deadline)
                if reached < offset:  # too long for one batch: settle this step, queue the rest
                    self._ledger.queue_recovery(part, records[indexes[-1]].offset + 1)
                    return [], reached, gap
            admitted.append(i)
            position = offset + 1
        return admitted, position, gap

    def _produce(
        self,
        part: PartitionLedger,
        records: Sequence[InputRecord],
        admitted: list[int],
        plan: Plan,
        gap: list[InputRecord],
        gap_plan: Plan | None,
        deadline: float,
    ) -> set[str]:
        """Write the gap's and the admitted records' outputs in the partition's transaction and wait for their
        acknowledgements. Returns the coordinates the broker refused as too large (the transaction is then
        aborted); raises `DeliveryError`/`Fenced` with the transaction aborted on any other failure."""
        ledger = self._ledger
        try:
            producer = ledger.begin(part)
        except Exception as exc:  # noqa: BLE001 - a fenced or broken producer: aborted, dropped, reported
            ledger.abort(part, exc)
        tracker = DeliveryTracker(producer)
        partition = self._settlement_partition(part)
        by_index: dict[int, InputRecord] = {}
        try:
            if gap_plan is not None:
                gap_indexes = list(range(len(gap)))
                self._write(tracker, gap_plan, gap_indexes, partition, deadline, offset=len(records))
                by_index.update((len(records) + i, r) for i, r in enumerate(gap))
            self._write(tracker, plan, admitted, partition, deadline, offset=0)
            by_index.update((i, records[i]) for i in admitted)
            too_large = tracker.wait(deadline)
        except RecordTooLarge:
            raise AssertionError("unreachable: _write handles local refusals") from None
        except Exception as exc:  # noqa: BLE001 - whatever failed, the transaction is aborted first
            ledger.abort(part, exc)
        if too_large:
            refused = {by_index[i].coordinates for i in too_large if i in by_index}
            log.warning(
                "%s[%d]: %d record(s) refused as too large; aborting to dead-letter them shrunk",
                part.topic,
                part.partition,
                len(refused),
            )
            ledger.abort_quietly(part, DeliveryError("records refused as too large"))
            return refused
        return set()

    def _write(
        self, tracker: DeliveryTracker, plan: Plan, indexes: list[int], partition: int, deadline: float, offset: int
    ) -> None:
        """Hand `plan`'s outputs for `indexes` to the producer; tracker indexes are shifted by `offset` so the
        gap's and the batch's records stay apart. A record the producer refuses locally as too large was not
        written: it is re-planned shrunk on the next attempt, through the broker-refusal path."""
        plain_idx: list[int] = []
        plain: list[dict[str, Any]] = []
        plain_of = plan.plain_of()
        for i in indexes:
            item = plan.single.get(i)
            if item is None:
                plain_idx.append(i + offset)
                plain.append(plain_of[i])
                continue
            try:
                tracker.produce(
                    item.topic,
                    item.key,
                    item.value,
                    item.headers,
                    deadline,
                    index=i + offset,
                    partition=partition if item.topic == self._topics.settlements else -1,
                )
            except RecordTooLarge:
                tracker.refuse(i + offset)
        if plain:
            for i in tracker.produce_batch(self._topics.settlements, plain_idx, plain, deadline, partition=partition):
                tracker.refuse(i)

    def _settlement_partition(self, part: PartitionLedger) -> int:
        """The source partition when the settlement topic has as many partitions as the source: then each
        transaction writes one settlement partition (fewer markers, less broker work per commit), and a user's
        settlements stay on the partition of their trades (both are keyed by USERID, ksqlDB's murmur2).
        Otherwise -1, the producer's own partitioner."""
        aligned = self._aligned.get(part.topic)
        if aligned is None:
            source = self._ledger.partitions_of(part.topic)
            aligned = source > 0 and source == self._ledger.partitions_of(self._topics.settlements)
            self._aligned[part.topic] = aligned
        return part.partition if aligned else -1
