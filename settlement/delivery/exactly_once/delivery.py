"""`ExactlyOnce`, the exactly-once delivery behind the seam (`settlement.core.plan.Delivery`) and this package's one
door: a batch settled through the ledger (ledger.py) per source partition (skip what is settled, repair what the host
skipped, write the rest inside the partition's open transaction); the ledger's committer (committer.py), started and
stopped here; the ranges this process lost, settled again here; and the repair (repair.py), built here over the same
ledger.

Every record is planned (decoded, settled, encoded) before anything is produced, as on the at-least-once path,
so a registry outage fails the batch with nothing written, and a record that is skipped as already settled
still gets its result (the HTTP path answers a re-posted body with the same per-record results: the rules are
deterministic). Whatever the host does after a failure (retry the batch, or skip past it), the partition's
next batch starts at or beyond the settled position, and what lies between is repaired.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from settlement.core import positions
from settlement.core.deadline import Deadline
from settlement.core.errors import DeliveryError
from settlement.core.plan import Outcome, Plain, Plan, PlanRecords, SettleBatch
from settlement.core.records import InputRecord
from settlement.core.topics import Topics
from settlement.delivery.exactly_once.committer import Committer
from settlement.delivery.exactly_once.fencing import Fenced
from settlement.delivery.exactly_once.ledger import Ledger, LedgerConfig
from settlement.delivery.exactly_once.partitions import PartitionState
from settlement.delivery.exactly_once.repair import Repair
from settlement.delivery.producer import DeliveryTracker, RecordTooLarge

log = logging.getLogger("settlement.exactly_once")

_ATTEMPTS = 3  # fenced, or a record refused as too large: take the partition again and re-plan at most this often
_TAKE_CONCURRENCY = 16  # partitions taken at once by one batch (a process's first batch over many partitions)


class _Sent(NamedTuple):
    tracker: DeliveryTracker
    by_index: dict[int, InputRecord]  # tracker index -> the record whose output it is


class ExactlyOnce:
    """Owns the ledger and everything that works on it: a batch's transactions (`settle`), the committer and the
    recovery of lost ranges (`start`, `close`), and the repair (`repair`). Nothing outside this package sees the
    ledger."""

    def __init__(self, ledger: Ledger, topics: Topics, *, delivery_timeout_s: float) -> None:
        self._ledger = ledger
        self._topics = topics
        self._timeout_s = delivery_timeout_s  # one recovered step's deadline, as one batch's
        self._settle_batch: SettleBatch | None = None
        self._committer: Committer | None = None
        # Coordinates the broker refused as too large: the next plan dead-letters them shrunk (the processor's
        # planner, through core/deadletter.refused_as_too_large, as the at-least-once path does at once).
        self._shrink: set[str] = set()
        self._aligned: dict[tuple[str, str], bool] = {}

    @classmethod
    def open(
        cls,
        config: LedgerConfig,
        producer_conf: Mapping[str, Any],
        consumer_conf: Mapping[str, Any],
        topics: Topics,
        *,
        delivery_timeout_s: float,
    ) -> ExactlyOnce:
        """A new ledger (its source reader's consumer is built now: a bad client setting raises `KafkaException`
        here) and the delivery over it. Call `start` once the batch path above exists."""
        return cls(Ledger(config, producer_conf, consumer_conf), topics, delivery_timeout_s=delivery_timeout_s)

    def start(self, settle_batch: SettleBatch) -> None:
        """Start the ledger's committer. A range whose transaction this process lost (or a gap too long for one
        batch) is settled again through `settle_batch`, the whole batch path (plan, deliver, telemetry) that the
        processor above runs: handed in, so that nothing here imports or calls the layer above by name."""
        if self._committer is None:
            self._settle_batch = settle_batch
            self._committer = Committer(self._ledger, self._settle_range)

    def close(self) -> None:
        """Commit what the ledger holds open and release its producers; the committer stops with it."""
        self._ledger.close()

    def repair(
        self,
        topic: str,
        group: str,
        admin_conf: Mapping[str, Any],
        stall_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> Repair:
        """The repair of `topic` (repair.py), over this ledger and through the batch path given to `start`."""
        if self._settle_batch is None:
            raise RuntimeError("ExactlyOnce.start must be called before a repair is built")
        return Repair(self._ledger, self._settle_batch, topic, group, admin_conf, stall_s, clock)

    def _settle_range(self, topic: str, partition: int, upto: int) -> None:
        """Settle a source range again whose transaction this process lost, or a gap too long for one batch:
        read from the settled position up to `upto` in steps, each run as a batch (records settled meanwhile
        are skipped as in any batch)."""
        assert self._settle_batch is not None  # started
        ledger = self._ledger
        part = ledger.partitions.get(topic, partition)
        while True:
            deadline = Deadline.after(self._timeout_s)
            with part.lock:
                ledger.take(part, deadline)
                start = part.position
            if start is None or start >= upto:
                return
            records, _ = ledger.source.read_range(topic, partition, start, upto, deadline)
            if not records:
                return  # only markers or aborted records up to `upto`
            log.warning("settling %s[%d] offsets %d..%d from the source", topic, partition, start, records[-1].offset)
            self._settle_batch(records)

    def settle(
        self, records: Sequence[InputRecord], plan_records: PlanRecords, deadline: Deadline, attempts: int = _ATTEMPTS
    ) -> list[Outcome]:
        """Each record's outcome, its outputs committed (or in an open transaction) exactly once. Every
        partition's records are handed to its producer before any acknowledgement is awaited, so a batch
        spread over several partitions waits about one round trip, not one per partition. The repair passes
        `attempts=1`: fenced while it repairs, it leaves the partition to whoever took it."""
        by_partition: dict[tuple[str, int], list[int]] = {}
        for i, record in enumerate(records):
            by_partition.setdefault((record.topic, record.partition), []).append(i)
        with self._ledger.partitions.locked(list(by_partition)) as parts:
            self._take_all(parts, deadline)
            plan = plan_records(records, self._shrink)
            pending = parts
            for attempt in range(1, attempts + 1):
                pending, replan = self._attempt(pending, by_partition, records, plan, plan_records, deadline, attempt)
                if not pending:
                    return plan.outcomes
                if replan:
                    plan = plan_records(records, self._shrink)
            names = ", ".join(f"{p.topic}[{p.partition}]" for p in pending)
            raise DeliveryError(f"{names}: not settled after {attempts} attempt(s)")

    def _attempt(
        self,
        parts: list[PartitionState],
        by_partition: dict[tuple[str, int], list[int]],
        records: Sequence[InputRecord],
        plan: Plan,
        plan_records: PlanRecords,
        deadline: Deadline,
        attempt: int,
    ) -> tuple[list[PartitionState], bool]:
        """One pass over the partitions still to settle: the ones to try again (fenced, or a record refused as
        too large), and whether the plan must be made again (a record of the batch must shrink)."""
        ledger = self._ledger
        retry: list[PartitionState] = []
        sent: list[tuple[PartitionState, int | None, list[int], _Sent]] = []
        # A partition that fails for good (DeliveryError) must not leave the others half done: a partition whose
        # records were already handed to its producer is still awaited and its position advanced, or its open
        # transaction would keep them while the retried batch wrote them again (the 3-broker blackhole row saw
        # 5 duplicates this way). The first such failure is raised once every partition is accounted for.
        failure: DeliveryError | None = None
        for part in parts:
            indexes = by_partition[(part.topic, part.partition)]
            try:
                self._take(part, deadline)
                admitted, position, gap = self._admit(part, records, indexes, deadline)
                if not admitted and not gap:
                    continue  # everything was settled already (a redelivery): nothing to write
                gap_plan = self._gap_plan(part, gap, plan_records)
                sent.append(
                    (part, position, admitted, self._send(part, records, admitted, plan, gap, gap_plan, deadline))
                )
            except Fenced as exc:
                log.warning("%s; taking the partition again (attempt %d)", exc, attempt)
                retry.append(part)
            except DeliveryError as exc:
                failure = failure or exc
        replan = False
        done: list[PartitionState] = []
        for part, position, admitted, handed in sent:
            try:
                refused = self._await(part, handed, deadline)
            except Fenced as exc:
                log.warning("%s; taking the partition again (attempt %d)", exc, attempt)
                retry.append(part)
                continue
            except DeliveryError as exc:
                failure = failure or exc
                continue
            if refused:
                self._shrink.update(refused)
                replan = replan or any(records[i].coordinates in refused for i in admitted)
                retry.append(part)
                continue
            part.position = position
            done.append(part)
        for part in done:
            if ledger.due(part):
                try:
                    ledger.commit(part, deadline)
                except Fenced as exc:
                    log.warning("%s at commit; taking the partition again (attempt %d)", exc, attempt)
                    retry.append(part)
                except DeliveryError as exc:
                    failure = failure or exc
        if failure is not None:
            raise failure
        return retry, replan

    def _gap_plan(self, part: PartitionState, gap: list[InputRecord], plan_records: PlanRecords) -> Plan | None:
        if not gap:
            return None
        log.warning(
            "%s[%d]: repairing %d record(s) the host moved past, offsets %d..%d",
            part.topic,
            part.partition,
            len(gap),
            gap[0].offset,
            gap[-1].offset,
        )
        return plan_records(gap, self._shrink)

    def _take_all(self, parts: list[PartitionState], deadline: Deadline) -> None:
        """Take every partition of the batch; those to take for the first time are taken concurrently (each
        costs a producer, `init_transactions` and a position read: round trips that overlap)."""
        cold = [p for p in parts if p.producer is None or p.committed is None]
        if len(cold) <= 1:
            for part in cold:
                self._take_or_leave(part, deadline)
            return
        with ThreadPoolExecutor(max_workers=min(_TAKE_CONCURRENCY, len(cold))) as pool:
            for future in [pool.submit(self._take_or_leave, part, deadline) for part in cold]:
                future.result()

    def _take_or_leave(self, part: PartitionState, deadline: Deadline) -> None:
        """`_take`, leaving a partition another process fenced in between to the attempts, which take it again
        (that process pinned or settled it; a batch must not fail for it)."""
        try:
            self._take(part, deadline)
        except Fenced as exc:
            log.warning("%s while taking the partition; the attempts take it again", exc)

    def _take(self, part: PartitionState, deadline: Deadline) -> None:
        """Take the partition (a no-op while this process holds it), and start its ledger if it has no settled
        position yet."""
        self._ledger.take(part, deadline)
        if part.committed is None:
            self._ledger.start(part, deadline)

    def _admit(
        self, part: PartitionState, records: Sequence[InputRecord], indexes: list[int], deadline: Deadline
    ) -> tuple[list[int], int | None, list[InputRecord]]:
        """The batch's records still to settle, the position after them, and the source records of the gap
        between the settled position and the first of them."""
        position = part.position
        assert position is not None  # held: pinned if it had none
        offsets = [records[i].offset for i in indexes]
        unsettled = positions.unsettled(position, offsets)
        gap: list[InputRecord] = []
        if unsettled.gap is not None:
            gap, reached = self._ledger.source.read_range(part.topic, part.partition, *unsettled.gap, deadline)
            taken = positions.step(unsettled, reached, offsets[-1])
            if taken.recover_upto is not None:  # too long for one batch: settle this step, queue the rest
                self._ledger.queue_recovery(part, taken.recover_upto)
            unsettled = taken.unsettled
        return [indexes[k] for k in unsettled.indexes], unsettled.position, gap

    def _send(
        self,
        part: PartitionState,
        records: Sequence[InputRecord],
        admitted: list[int],
        plan: Plan,
        gap: list[InputRecord],
        gap_plan: Plan | None,
        deadline: Deadline,
    ) -> _Sent:
        """Hand the gap's and the admitted records' outputs to the partition's producer, in its open
        transaction; raises `DeliveryError`/`Fenced`, the transaction aborted, if the producer refuses."""
        ledger = self._ledger
        try:
            producer = ledger.begin(part)
        except Exception as exc:  # noqa: BLE001 - a fenced or broken producer: aborted, dropped, reported
            ledger.abort(part, exc)
        tracker = DeliveryTracker(producer)
        topics = (self._topics.settlements, self._topics.dead_letter)
        partitions = {topic: self._output_partition(part, topic) for topic in topics}
        by_index: dict[int, InputRecord] = {}
        try:
            if gap_plan is not None:
                self._write(tracker, gap_plan, list(range(len(gap))), partitions, deadline, offset=len(records))
                by_index.update((len(records) + i, r) for i, r in enumerate(gap))
            self._write(tracker, plan, admitted, partitions, deadline, offset=0)
            by_index.update((i, records[i]) for i in admitted)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the transaction is aborted first
            ledger.abort(part, exc)
        return _Sent(tracker, by_index)

    def _await(self, part: PartitionState, sent: _Sent, deadline: Deadline) -> set[str]:
        """Wait for what `_send` handed over. Returns the coordinates the broker refused as too large (the
        transaction is then aborted); raises `DeliveryError`/`Fenced`, aborted, on any other failure."""
        ledger = self._ledger
        try:
            too_large = sent.tracker.wait(deadline)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the transaction is aborted first
            ledger.abort(part, exc)
        if not too_large:
            return set()
        refused = {sent.by_index[i].coordinates for i in too_large if i in sent.by_index}
        log.warning(
            "%s[%d]: %d record(s) refused as too large; aborting to dead-letter them shrunk",
            part.topic,
            part.partition,
            len(refused),
        )
        ledger.abort_quietly(part, DeliveryError("records refused as too large"))
        return refused

    def _write(
        self,
        tracker: DeliveryTracker,
        plan: Plan,
        indexes: list[int],
        partitions: Mapping[str, int],
        deadline: Deadline,
        offset: int,
    ) -> None:
        """Hand `plan`'s outputs for `indexes` to the producer; tracker indexes are shifted by `offset` so the
        gap's and the batch's records stay apart. A record the producer refuses locally as too large was not
        written: it is re-planned shrunk on the next attempt, through the broker-refusal path."""
        plain_idx: list[int] = []
        plain: list[Plain] = []
        plain_of = plan.plain_by_index
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
                    partition=partitions.get(item.topic, -1),
                    timestamp=item.timestamp,
                )
            except RecordTooLarge:
                tracker.refuse(i + offset)
        if plain:
            settlements = self._topics.settlements
            for i in tracker.produce_plain(settlements, plain_idx, plain, deadline, partition=partitions[settlements]):
                tracker.refuse(i)

    def _output_partition(self, part: PartitionState, topic: str) -> int:
        """The source partition when the output topic has as many partitions as the source: then each
        transaction writes one partition of it (fewer markers, less broker work per commit), a user's outputs
        stay on the partition of their trades (both are keyed by USERID, ksqlDB's murmur2), and a transaction
        left open by a dead instance holds back read_committed readers of that one partition only, not of the
        whole topic (a one-partition dead-letter topic is held back by any). Otherwise -1, the producer's own
        partitioner."""
        aligned = self._aligned.get((part.topic, topic))
        if aligned is None:
            source = self._ledger.source.partition_count(part.topic)
            aligned = source > 0 and source == self._ledger.source.partition_count(topic)
            self._aligned[(part.topic, topic)] = aligned
        return part.partition if aligned else -1
