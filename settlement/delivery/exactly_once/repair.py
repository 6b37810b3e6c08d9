"""The repair: settles what a dead or stalled instance left behind, with no new trade needed.

The exactly-once ledger (ledger.py) returns to the host before a batch's transaction commits, so
a process that dies right after (a recycle, an OOM, a scale-in that kills the worker) takes the open transaction
with it while the host has committed past the batch. Repairing that used to need the partition's next batch; at the
end of a trading day there is none, and on Flex Consumption the trigger's scaler goes to zero instances exactly
then. The repair runs on a timer instead (function_app.py, `SETTLEMENT_REPAIR_SCHEDULE`), on whichever instance the
platform wakes for it, reads every partition's offsets from Kafka (nothing it needs lives in one process's memory),
and takes over each partition that is behind and stalled (settlement/core/liveness.py): it fences the partition with
its own `transactional.id` (aborting any holder's open transaction at once, a coordinator's timeout abort included),
reads the settled position after fencing, settles the range up to the trigger group's committed offset (records
waiting beyond it that nothing delivers: up to the last stable offset) in steps, each committed in the transaction
that writes its outputs, and releases the partition. Fenced in turn while it
repairs (an instance took the partition), it leaves it to that instance, which repairs from the same position. Every
run records settlement lag per partition: records, and seconds the settled position has stood behind the trigger's
offset (settlement/core/liveness.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from settlement import telemetry
from settlement.core.deadline import Deadline
from settlement.core.liveness import TAKEN, Action, Offsets, Sighting, action_for, sight
from settlement.core.naming import settled_group
from settlement.core.plan import SettleBatch
from settlement.delivery.exactly_once.ledger import Ledger
from settlement.delivery.producer import LIBRDKAFKA_LOG

log = logging.getLogger("settlement.repair")


@dataclass(frozen=True)
class PartitionRun:
    """What one run saw and did on one partition."""

    partition: int
    offsets: Offsets
    action: Action
    lag_s: float
    settled: int = 0  # records this run settled
    error: str | None = None


@dataclass
class RepairRun:
    topic: str
    partitions: list[PartitionRun] = field(default_factory=list)
    elapsed_ms: float = 0.0
    admin_calls: int = 0

    @property
    def lag(self) -> int:
        return sum(p.offsets.lag for p in self.partitions)

    @property
    def settled(self) -> int:
        return sum(p.settled for p in self.partitions)

    @property
    def taken(self) -> list[PartitionRun]:
        return [p for p in self.partitions if p.action in TAKEN]

    def line(self) -> str:
        """The run's log line: settlement lag per partition that has any, and what was taken over."""
        lagging = [p for p in self.partitions if p.offsets.lag]
        oldest = max((p.lag_s for p in lagging), default=0.0)
        parts = ", ".join(f"[{p.partition}] {p.offsets.lag} ({p.lag_s:.1f} s)" for p in lagging[:20])
        more = f" and {len(lagging) - 20} more" if len(lagging) > 20 else ""
        taken = ", ".join(
            f"[{p.partition}] {p.action.value}"
            + (f" {p.settled} settled" if p.settled else "")
            + (f" failed: {p.error}" if p.error else "")
            for p in self.taken
        )
        return (
            f"repair {self.topic}: {len(self.partitions)} partitions, settlement lag {self.lag} record(s), longest "
            f"{oldest:.1f} s{': ' + parts + more if parts else ''}; taken over: {taken or 'none'}; "
            f"{self.elapsed_ms:.0f} ms, {self.admin_calls} admin calls"
        )


class Repair:
    """One per process, reused by every timer run (its sightings only save a new process's first wait). Built by
    `ExactlyOnce.repair` over its ledger: the partitions it takes over are the ledger's, and what it settles goes
    through `settle_batch`, the same batch path as a trigger's batch."""

    def __init__(
        self,
        ledger: Ledger,
        settle_batch: SettleBatch,
        topic: str,
        group: str,
        admin_conf: Mapping[str, Any],
        stall_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._settle_batch = settle_batch
        self.topic = topic
        self._group = group
        conf: dict[str, Any] = {**admin_conf, "logger": LIBRDKAFKA_LOG}
        self._admin_conf = conf
        self._admin = AdminClient(conf)
        # Group offsets are read with a consumer of each group, never with the admin client: librdkafka's handler of
        # an admin ListConsumerGroupOffsets answer (2.16 and before, confluentinc/librdkafka#5040) dereferences the
        # admin client's consumer group, which does not exist, when the coordinator answers NOT_COORDINATOR, as it
        # does while a broker restarts or a coordinator moves: the whole process died of SIGSEGV in librdkafka's
        # main thread, on Premium the trigger's instance with it (the broker-restart fault row stalled: no instance
        # left, nothing logged). A consumer's own committed-offsets request handles that answer. These consumers
        # never subscribe, so they never join the groups; read_uncommitted, so a dead holder's pending offset
        # commit does not hold the request up (no require-stable) until the coordinator aborts it.
        self._offsets = {
            name: Consumer(
                {
                    **conf,
                    "group.id": name,
                    "enable.auto.commit": False,
                    "isolation.level": "read_uncommitted",
                }
            )
            for name in (group, settled_group(group))
        }
        self.stall_s = stall_s
        self._clock = clock
        self._seen: dict[int, Sighting] = {}
        self._running = threading.Lock()
        self.last: RepairRun | None = None  # the latest run's report (tests and the local host read it)

    def run(self, budget_s: float) -> RepairRun | None:
        """One run within `budget_s`; None if a run of this process is still going (timer runs never overlap
        on the platform, but a run may outlast the schedule's interval)."""
        if not self._running.acquire(blocking=False):
            return None
        try:
            return self._run(budget_s)
        finally:
            self._running.release()

    def _run(self, budget_s: float) -> RepairRun:
        started = self._clock()
        deadline = Deadline(started + budget_s)  # on the repair's clock (time.monotonic unless a test's)
        report = RepairRun(self.topic)
        offsets = self._observe(report, budget_s)
        fresh = self._remember(offsets)
        # A process that never saw these partitions (a new instance, woken from zero) watches the ones behind
        # once for `stall_s` before deciding, rather than wait for its next run.
        if fresh and deadline.at - self._clock() > self.stall_s + 1.0:
            time.sleep(self.stall_s)
            offsets = self._observe(report, budget_s)
            self._remember(offsets)
        now = self._clock()
        actions = {p: action_for(self._seen[p], now, self.stall_s) for p in offsets}
        if {Action.DRAIN, Action.FENCE} & set(actions.values()) and self._rebalancing(report):
            actions = {p: action_for(self._seen[p], now, self.stall_s, rebalancing=True) for p in offsets}
        for partition, seen in sorted(offsets.items()):
            action = actions[partition]
            run = PartitionRun(partition, seen, action, self._seen[partition].lag_s(now))
            if action in TAKEN:
                run = self._take_over(run, deadline, report)
            report.partitions.append(run)
            telemetry.record_lag(self.topic, partition, seen.lag, run.lag_s, seen.waiting)
        report.elapsed_ms = (self._clock() - started) * 1000
        level = logging.WARNING if report.taken else logging.INFO
        log.log(level, "%s", report.line())
        self.last = report
        return report

    def _remember(self, offsets: Mapping[int, Offsets]) -> bool:
        """Update the sightings; True if a partition behind was seen for the first time by this process."""
        now = self._clock()
        fresh = False
        for partition, seen in offsets.items():
            previous = self._seen.get(partition)
            fresh = fresh or (previous is None and seen.behind)
            self._seen[partition] = sight(previous, seen, now)
        return fresh

    def _observe(self, report: RepairRun, timeout_s: float) -> dict[int, Offsets]:
        """Every partition's settled position, trigger offset and end: three requests, whatever the partition
        count. Offsets are read without require-stable: a dead holder's pending offset commit must not block the
        reading until the coordinator aborts it; what was committed is what counts."""
        count = self._ledger.source.partition_count(self.topic)
        tps = [TopicPartition(self.topic, p) for p in range(count)]
        timeout = max(1.0, min(10.0, timeout_s))
        committed = self._group_offsets(self._group, tps, timeout)
        settled = self._group_offsets(settled_group(self._group), tps, timeout)
        ends = self._admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in tps},
            isolation_level=IsolationLevel.READ_UNCOMMITTED,
            request_timeout=timeout,
        )
        report.admin_calls += 3
        out: dict[int, Offsets] = {}
        unobserved = False
        for tp, future in ends.items():
            try:
                end = future.result().offset
            except KafkaException as exc:  # no leader now (an election, a topic just created): the next run sees it
                log.info("repair: %s[%d] not observed this run: %s", tp.topic, tp.partition, exc)
                unobserved = True
                continue
            out[tp.partition] = Offsets(settled.get(tp.partition), committed.get(tp.partition), end)
        if unobserved:
            # librdkafka's admin client keeps the leader epochs it learnt: after a broker restart (a new epoch) its
            # ListOffsets kept failing with FENCED_LEADER_EPOCH for as long as it lived (over 60 s here), and the
            # repair saw no partition. A new client learns the cluster afresh for the next run.
            self._admin = AdminClient(self._admin_conf)
        return out

    def _rebalancing(self, report: RepairRun) -> bool:
        """Whether the trigger group is in a rebalance (asked only when a partition without lag would be taken)."""
        report.admin_calls += 1
        try:
            group = self._admin.describe_consumer_groups([self._group], request_timeout=10)[self._group].result()
        except KafkaException:
            return True  # unknown: do not fence on a guess
        return group.state in (ConsumerGroupState.PREPARING_REBALANCING, ConsumerGroupState.COMPLETING_REBALANCING)

    def _group_offsets(self, group: str, tps: list[TopicPartition], timeout_s: float) -> dict[int, int]:
        """The group's committed offsets (an OffsetFetch through a consumer of the group: see `__init__`)."""
        committed = self._offsets[group].committed(tps, timeout=timeout_s)
        return {tp.partition: tp.offset for tp in committed if tp.offset >= 0 and tp.error is None}

    def _last_stable(self, partition: int, deadline: Deadline, report: RepairRun) -> int:
        """The partition's last stable offset: below it every record is committed or aborted, so a read_committed
        read of the range ends there (a source transaction still open, ksqlDB's, stays its writer's to finish)."""
        report.admin_calls += 1
        tp = TopicPartition(self.topic, partition)
        futures = self._admin.list_offsets(
            {tp: OffsetSpec.latest()},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=deadline.timeout(10.0),
        )
        return int(futures[tp].result().offset)

    def _target(self, run: PartitionRun, deadline: Deadline, report: RepairRun) -> int | None:
        """Where the take-over settles up to: the trigger's offset (REPAIR), the last stable offset (DRAIN), or
        nowhere (FENCE)."""
        if run.action is Action.REPAIR:
            return run.offsets.committed
        if run.action is Action.DRAIN:
            return self._last_stable(run.partition, deadline, report)
        return None

    def _take_over(self, run: PartitionRun, deadline: Deadline, report: RepairRun) -> PartitionRun:
        """Fence the partition, settle what lies below its target (`_target`) in committed steps, release."""
        ledger = self._ledger
        part = ledger.partitions.get(self.topic, run.partition)
        settled = 0
        position: int | None = None
        target: int | None = None
        try:
            target = self._target(run, deadline, report)
            with part.lock:
                ledger.take(part, deadline, fence=True)
                position = part.committed
            while target is not None and position is not None and position < target and self._clock() < deadline.at:
                records, reached = ledger.source.read_range(self.topic, run.partition, position, target, deadline)
                if records:
                    log.warning(
                        "repair: settling %s[%d] offsets %d..%d %s (trigger committed %s)",
                        self.topic, run.partition, records[0].offset, records[-1].offset,
                        "left behind" if run.action is Action.REPAIR else "waiting undelivered",
                        run.offsets.committed,
                    )  # fmt: skip
                    self._settle_batch(records, attempts=1)
                    settled += len(records)
                with part.lock:
                    if part.producer is None:
                        break  # fenced meanwhile: the partition's new holder repairs from the same position
                    if records:
                        ledger.commit(part, deadline)
                    else:
                        ledger.advance(part, reached, deadline)  # markers or aborted records only
                    position = part.committed
        except Exception as exc:  # noqa: BLE001 - reported, and the next run tries again
            run = replace(run, settled=settled, error=f"{type(exc).__name__}: {exc}")
        else:
            run = replace(run, settled=settled)
        finally:
            self._release(part, deadline)
        if position is not None:
            # Its own progress is not a holder's: the next run continues a range this one could not finish at once.
            # A finished range starts a new watch: records waiting beyond it are the trigger's to deliver first.
            offsets = Offsets(position, run.offsets.committed, run.offsets.end)
            seen = self._seen[run.partition]
            if target is not None and position >= target:
                now = self._clock()
                self._seen[run.partition] = Sighting(offsets, now, now)
            else:
                self._seen[run.partition] = Sighting(offsets, seen.since, seen.settled_since)
        return run

    def _release(self, part: Any, deadline: Deadline) -> None:
        """Commit whatever is open on the partition (a batch of this process may have run meanwhile) and give its
        producer up: the instance the host assigns the partition to takes it with its next batch."""
        with part.lock:
            try:
                self._ledger.commit(part, deadline)
            except Exception as exc:  # noqa: BLE001 - the commit's failure queued the range; reported, released
                log.warning("repair: releasing %s[%d]: %s", part.topic, part.partition, exc)
            self._ledger.drop(part)
