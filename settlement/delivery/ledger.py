"""The exactly-once ledger: a source partition's settlements, dead letters and settled position written in one
Kafka transaction, by a transactional producer that only one process at a time can hold.

The function cannot see the host's consumer (no group generation, no member id), so it fences by partition,
as Kafka Streams did before KIP-447: each source partition has its own `transactional.id`
(`<group>.settled.<topic>.<partition>`), and whichever process settles that partition calls
`init_transactions`, which aborts the previous holder's open transaction and makes every later write of it
fail. The settled position (the next offset to settle) is committed inside the same transaction into a
consumer group of the function's own, `<group>.settled`, so standard Kafka tooling shows settlement lag, and
is read back right after fencing, when no transaction of the partition can be pending.

What a read_committed reader sees is then each source record exactly once, whatever the host delivers:

- a record below the position was settled by a committed transaction: it is skipped (a redelivery, a
  rebalance, a re-posted HTTP body, or the other entry path);
- a batch that starts beyond the position is preceded by the missing range (up to `REPAIR_LIMIT` records a
  batch, the rest queued for the committer), read from the source topic by
  the ledger itself (gap repair): the host skipped it (a failed batch given up after its retries), or a crash
  lost the open transaction that held it after the host had moved on. A gap that holds only transaction
  markers or aborted records (a source written by ksqlDB under exactly_once_v2) reads as empty in a few ms.
  Gaps inside one batch are not read: the host's consumer fetched those offsets in sequence, so they hold
  nothing a read_committed consumer returns (a partition handed back mid-batch only goes back).

Transactions are kept open across batches and committed once `commit_interval_s` has passed (by the next
batch, or by a background committer), so their cost is paid a few times a second, not per batch. The
function returns to the host before its records are committed; a crash then loses the open transaction,
the host has moved its offset past it, and the next batch of the partition (on whichever instance) repairs
the range. A partition that has no settled position yet gets one (its first retained offset, where the
host's new consumer group starts too) committed before its first batch is planned.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from settlement.core import positions
from settlement.core.errors import DeliveryError
from settlement.core.records import InputRecord
from settlement.delivery.producer import LIBRDKAFKA_LOG, kafka_error

log = logging.getLogger("settlement.ledger")

SETTLED_SUFFIX = ".settled"
# Most gap records one batch settles before its own; a longer gap is settled in such steps by the following
# batches and the committer, each step committed, so that a long outage (or a new ledger on a topic with
# history) makes progress within each batch's deadline.
REPAIR_LIMIT = 5_000
_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


class Fenced(DeliveryError):
    """Another process initialised this partition's transactional id: what this one had open is aborted."""


def settled_group(group: str) -> str:
    """The consumer group holding each source partition's settled position (ACLs: the same prefix)."""
    return f"{group}{SETTLED_SUFFIX}"


def transactional_id(group: str, topic: str, partition: int) -> str:
    """One id per source partition, under the settled group's name so that one prefixed ACL covers both."""
    return f"{settled_group(group)}.{topic}.{partition}"


def is_fenced(exc: BaseException) -> bool:
    err = kafka_error(exc)
    return err is not None and (err.code() in _FENCED or err.fatal())


@dataclass(frozen=True)
class LedgerConfig:
    group: str
    commit_interval_s: float
    timeout_s: float  # bounds init, commit and repair reads (the batch deadline bounds them further)


class PartitionLedger:
    """One source partition: its transactional producer, committed position and open transaction. Used under
    `lock` only (one batch, or the committer, at a time)."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.lock = threading.Lock()
        self.producer: Producer | None = None
        self.committed: int | None = None  # the settled position as committed (None: the ledger has none yet)
        self.position: int | None = None  # ... including the open transaction
        self.open_since: float | None = None  # monotonic time the open transaction began

    def reset(self) -> None:
        """Forget the open transaction (aborted or lost): the next batch repairs from the committed position."""
        self.position = self.committed
        self.open_since = None


class Ledger:
    """Every source partition this process settles, a consumer of the settled group (positions, group
    metadata for `send_offsets_to_transaction`, gap repair reads) and the background committer."""

    def __init__(
        self,
        config: LedgerConfig,
        producer_conf: Mapping[str, Any],
        consumer_conf: Mapping[str, Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._producer_conf = dict(producer_conf)
        self._consumer = Consumer(
            {
                **consumer_conf,
                "group.id": settled_group(config.group),
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                # A repair read assigns a partition and reads a short range: a long-polling fetch left at a
                # partition's end would hold the next assignment up to librdkafka's 500 ms default.
                "fetch.wait.max.ms": 5,
                "logger": LIBRDKAFKA_LOG,
            }
        )
        self._metadata = self._consumer.consumer_group_metadata()
        self._consumer_lock = threading.Lock()
        self._partitions: dict[tuple[str, int], PartitionLedger] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._closed = threading.Event()
        self._partition_counts: dict[str, int] = {}
        # Ranges whose transaction was lost in this process (up to the position it had reached): the committer
        # (settlement/delivery/committer.py) settles each again until it succeeds.
        self._lost: dict[tuple[str, int], int] = {}
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- partitions -------------------------------------------------------------------------------------------

    def partition(self, topic: str, partition: int) -> PartitionLedger:
        key = (topic, partition)
        part = self._partitions.get(key)
        if part is None:
            with self._lock:
                part = self._partitions.setdefault(key, PartitionLedger(topic, partition))
        return part

    @contextmanager
    def holding(self, keys: Sequence[tuple[str, int]]) -> Iterator[list[PartitionLedger]]:
        """Lock a batch's partitions, in a fixed order so that concurrent batches cannot deadlock."""
        parts = [self.partition(t, p) for t, p in sorted(set(keys))]
        taken: list[PartitionLedger] = []
        try:
            for part in parts:
                part.lock.acquire()
                taken.append(part)
            yield parts
        finally:
            for part in reversed(taken):
                part.lock.release()

    def ready(self, part: PartitionLedger, deadline: float, fence: bool = False) -> None:
        """Hold the partition: build its producer, fence every earlier holder, read the settled position. With
        `fence`, even if this process holds it already (the repair takes over a partition whose positions stand
        still, whoever holds it: a new producer epoch aborts whatever transaction of it is open)."""
        if fence and part.producer is not None:
            self.drop(part)
        if part.producer is not None:
            return
        conf = {
            **self._producer_conf,
            "transactional.id": transactional_id(self.config.group, part.topic, part.partition),
        }
        producer = Producer(conf)
        try:
            until = time.monotonic() + self._bounded(deadline)
            while True:
                try:
                    producer.init_transactions(self._left(until))
                    break
                except KafkaException as exc:  # "retry call to resume": librdkafka asks for the call again
                    err = kafka_error(exc)
                    if err is None or not err.retriable() or time.monotonic() >= until:
                        raise
            part.committed = self._read_position(part, deadline)
        except KafkaException as exc:
            _close(producer)
            raise DeliveryError(f"could not take {part.topic}[{part.partition}] for settling: {exc}") from None
        part.producer = producer
        part.reset()
        log.info("holding %s[%d], settled position %s", part.topic, part.partition, part.committed)

    def _read_position(self, part: PartitionLedger, deadline: float) -> int | None:
        tp = TopicPartition(part.topic, part.partition)
        with self._consumer_lock:
            (got,) = self._consumer.committed([tp], timeout=self._bounded(deadline))
        if got.error is not None:
            raise KafkaException(got.error)
        return None if got.offset < 0 else got.offset

    def drop(self, part: PartitionLedger, lost: bool = False) -> None:
        """Give up the partition's producer (fenced, or unusable): the next batch takes it again. With `lost`,
        the open transaction's range is queued for the committer to settle again from the source, so that a
        failed commit is repaired even if the partition sees no later batch."""
        if lost:
            self._queue_lost(part)
        if part.producer is not None:
            log.debug("%s[%d]: producer dropped (open: %s)", part.topic, part.partition, part.open_since is not None)
            _close(part.producer)
        part.producer = None
        part.committed = None
        part.reset()

    # -- transactions -----------------------------------------------------------------------------------------

    def begin(self, part: PartitionLedger) -> Producer:
        """The partition's producer, inside an open transaction."""
        assert part.producer is not None
        if part.open_since is None:
            part.producer.begin_transaction()
            part.open_since = self._clock()
            log.debug("%s[%d]: transaction begun at position %s", part.topic, part.partition, part.position)
        return part.producer

    def commit(self, part: PartitionLedger, deadline: float | None = None) -> None:
        """Commit the open transaction with the partition's position, retrying what librdkafka calls retriable
        (a broker restart, a coordinator move) until `deadline` (or the ledger's timeout). On a definite failure
        the producer is dropped, the range it held is queued for recovery unless another process fenced this
        one (that one repairs it), and `DeliveryError` (or `Fenced`) raised."""
        if part.open_since is None or part.producer is None or part.position is None:
            return
        until = time.monotonic() + self._bounded(deadline)
        offsets = [TopicPartition(part.topic, part.partition, part.position)]
        sent = False
        while True:
            try:
                if not sent:
                    _send_offsets(part.producer, offsets, self._metadata, self._left(until))
                    sent = True
                part.producer.commit_transaction(self._left(until))
                break
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None and err.retriable() and not err.txn_requires_abort() and time.monotonic() < until:
                    time.sleep(0.1)
                    continue
                # A commit that timed out may still complete on the coordinator: never guess. Dropping the producer
                # makes the next holder fence again, which waits for that outcome, and re-read the position.
                fenced = is_fenced(exc)
                self.drop(part, lost=not fenced)
                if fenced:
                    raise Fenced(f"{part.topic}[{part.partition}]: {exc}") from None
                raise DeliveryError(f"{part.topic}[{part.partition}] commit failed: {exc}") from None
        part.committed = part.position
        part.open_since = None
        log.debug("%s[%d]: committed position %s", part.topic, part.partition, part.position)

    @staticmethod
    def _left(until: float) -> float:
        return max(0.1, until - time.monotonic())

    def abort(self, part: PartitionLedger, cause: BaseException) -> NoReturn:
        """Abort the open transaction (its records become invisible to read_committed readers) and raise why."""
        log.debug("%s[%d]: aborting: %s", part.topic, part.partition, cause)
        fenced = is_fenced(cause)
        if not fenced and part.producer is not None:
            try:
                part.producer.abort_transaction(self.config.timeout_s)
            except KafkaException as exc:
                fenced = True  # an abort that fails leaves the producer unusable either way
                cause = exc
        if fenced:
            self.drop(part, lost=not is_fenced(cause))
            raise Fenced(f"{part.topic}[{part.partition}]: {cause}") from None
        self._queue_lost(part)
        part.reset()
        raise DeliveryError(f"{part.topic}[{part.partition}] transaction aborted: {cause}") from None

    def abort_quietly(self, part: PartitionLedger, cause: BaseException) -> None:
        with suppress(DeliveryError):
            self.abort(part, cause)

    def due(self, part: PartitionLedger) -> bool:
        """The open transaction should be committed now: its interval passed."""
        return positions.commit_due(part.open_since, self._clock(), self.config.commit_interval_s)

    def pin(self, part: PartitionLedger, deadline: float) -> None:
        """Give a partition that has no settled position one: its first retained offset, committed at once in
        a transaction of its own, before anything of the batch is planned. Whatever the host delivered or gave
        up before (even batches that failed before the ledger existed) then lies in a gap that is repaired.
        To start a ledger elsewhere (an at-least-once deployment switched over), set the `<group>.settled`
        offsets first with Kafka's own tooling."""
        offset = self.first_offset(part, deadline)
        part.position = offset
        self.begin(part)
        self.commit(part, deadline)
        log.info("%s[%d]: the ledger begins at offset %d", part.topic, part.partition, offset)

    def advance(self, part: PartitionLedger, offset: int, deadline: float) -> None:
        """Commit `offset` as the settled position with nothing written: a range that holds only transaction
        markers or aborted records (a source written under exactly_once_v2) has nothing to settle."""
        part.position = offset
        self.begin(part)
        self.commit(part, deadline)

    def commit_due(self) -> None:
        """The committer's round: commit every transaction left open past its interval by a quiet partition."""
        for part in list(self._partitions.values()):
            if not self.due(part) or not part.lock.acquire(blocking=False):
                continue
            try:
                if self.due(part):
                    self.commit(part)
            except DeliveryError as exc:
                log.warning("background commit failed (the next batch or the repair timer settles it): %s", exc)
            finally:
                part.lock.release()

    def _queue_lost(self, part: PartitionLedger) -> None:
        """Queue the open transaction's range, if it held anything, for recovery."""
        if part.open_since is not None and part.position is not None and part.position != part.committed:
            self.queue_recovery(part, part.position)

    @property
    def closed(self) -> threading.Event:
        """Set once the ledger is closed: the committer stops."""
        return self._closed

    def lost(self) -> dict[tuple[str, int], int]:
        """The ranges to settle again from the source: (topic, partition) -> the position to reach."""
        with self._lock:
            return dict(self._lost)

    def recovered(self, topic: str, partition: int, upto: int) -> None:
        """A lost range was settled up to `upto`: forget it, unless a later loss queued more meanwhile."""
        with self._lock:
            if self._lost.get((topic, partition)) == upto:
                del self._lost[(topic, partition)]

    def close(self, timeout_s: float = 10.0) -> None:
        """Commit what is open, then release every producer (a graceful stop loses nothing to repair)."""
        self._closed.set()
        for part in list(self._partitions.values()):
            if not part.lock.acquire(timeout=timeout_s):
                continue
            try:
                self.commit(part)
            except DeliveryError as exc:
                log.warning("commit at close failed (the next holder repairs): %s", exc)
            finally:
                self.drop(part)
                part.lock.release()
        with self._consumer_lock:
            self._consumer.close()

    # -- source reads -----------------------------------------------------------------------------------------

    def partitions_of(self, topic: str) -> int:
        """A topic's partition count (cached; 0 if it cannot be read)."""
        count = self._partition_counts.get(topic)
        if count is None:
            with self._consumer_lock:
                meta = self._consumer.list_topics(topic, timeout=self.config.timeout_s).topics.get(topic)
            count = len(meta.partitions) if meta is not None and meta.error is None else 0
            if count:
                self._partition_counts[topic] = count
        return count

    def read_gap(
        self, part: PartitionLedger, start: int, end: int, deadline: float, limit: int = REPAIR_LIMIT
    ) -> tuple[list[InputRecord], int]:
        """The source records in offsets [start, end) as read_committed consumers see them, shaped as the host
        hands them over (a key as UTF-8 text, a null value as empty bytes), at most `limit` of them; and the
        offset reading stopped at (`end`, or the first record left for later)."""
        out: list[InputRecord] = []
        with self._consumer_lock:
            self._consumer.assign([TopicPartition(part.topic, part.partition, start)])
            try:
                while True:
                    if time.monotonic() > deadline:
                        raise DeliveryError(f"{part.topic}[{part.partition}] gap {start}..{end - 1} not read in time")
                    for msg in self._consumer.consume(500, timeout=0.005):
                        if msg.topic() != part.topic or msg.partition() != part.partition:
                            continue  # left from an earlier assignment
                        err = msg.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                return out, end
                            raise DeliveryError(f"reading {part.topic}[{part.partition}] for repair: {err}")
                        offset = msg.offset() or 0
                        if offset < start:
                            continue
                        if offset >= end:
                            return out, end
                        if len(out) == limit:
                            return out, offset
                        out.append(_as_host_record(msg, part.topic, part.partition))
                    position = self._consumer.position([TopicPartition(part.topic, part.partition)])[0].offset
                    if position >= end:
                        return out, end
            finally:
                self._consumer.unassign()

    def first_timestamps(self, topic: str, starts: Mapping[int, int], timeout_s: float) -> dict[int, int]:
        """The timestamp (epoch ms) of the first record a read_committed reader sees at or after each partition's
        start offset, read in one assignment (one fetch per broker, not one per partition). A partition with no
        such record within `timeout_s` (its end, or an open transaction of the source) is left out."""
        found: dict[int, int] = {}
        if not starts:
            return found
        with self._consumer_lock:
            self._consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
            try:
                until = time.monotonic() + timeout_s
                pending = set(starts)
                while pending and time.monotonic() < until:
                    for msg in self._consumer.consume(500, timeout=0.05):
                        p = msg.partition()
                        if msg.topic() != topic or p not in pending:
                            continue
                        if msg.error() is None:
                            kind, stamp = msg.timestamp()
                            if kind != 0 and (msg.offset() or 0) >= starts[p]:
                                found[p] = stamp
                        pending.discard(p)  # a record, or the partition's end (EOF), or an error: done with it
            finally:
                self._consumer.unassign()
        return found

    def queue_recovery(self, part: PartitionLedger, upto: int) -> None:
        """Have the committer settle the partition up to `upto` from the source (a gap too long for one batch)."""
        with self._lock:
            key = (part.topic, part.partition)
            self._lost[key] = max(self._lost.get(key, 0), upto)

    def first_offset(self, part: PartitionLedger, deadline: float) -> int:
        """The partition's first retained offset: where a new ledger begins, as a new consumer group with
        autoOffsetReset Earliest (host.json) does."""
        with self._consumer_lock:
            low, _ = self._consumer.get_watermark_offsets(
                TopicPartition(part.topic, part.partition), timeout=self._bounded(deadline), cached=False
            )
        return int(low)

    def _bounded(self, deadline: float | None) -> float:
        if deadline is None:
            return self.config.timeout_s
        return max(0.1, min(self.config.timeout_s, deadline - time.monotonic()))


def _send_offsets(producer: Producer, offsets: list[TopicPartition], metadata: Any, timeout_s: float) -> None:
    """`send_offsets_to_transaction`, bounded by its timeout even when librdkafka does not bound it: with the
    group coordinator gone (a broker restart) the call can block for good past its timeout (librdkafka issues
    #5456 and #5511, open in 2.16). The call runs in a thread of its own; one still running after the timeout
    is abandoned with its producer, which the next holder's `init_transactions` fences."""
    failure: list[BaseException] = []

    def call() -> None:
        try:
            producer.send_offsets_to_transaction(offsets, metadata, timeout_s)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=call, name="settlement-send-offsets", daemon=True)
    thread.start()
    thread.join(timeout_s + 1.0)
    if thread.is_alive():
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "send_offsets_to_transaction did not return"))
    if failure:
        raise failure[0]


def _as_host_record(msg: Any, topic: str, partition: int) -> InputRecord:
    key = msg.key()
    if key is not None:
        key = key.decode("utf-8", errors="replace").encode("utf-8")  # keyDataType String, as the host does
    kind, stamp = msg.timestamp()
    return InputRecord(
        key,
        msg.value() or b"",
        topic,
        partition,
        int(msg.offset()),
        stamp if kind != 0 else None,
        tuple((name, value or b"") for name, value in (msg.headers() or [])),
    )


def _close(producer: Producer) -> None:
    """Drop a producer without waiting: a fenced one can deliver nothing more, and what it held is aborted."""
    with suppress(Exception):
        producer.flush(0)


def _close_at_exit(ref: weakref.ref[Ledger]) -> None:
    ledger = ref()
    if ledger is not None and not ledger._closed.is_set():
        ledger.close(timeout_s=5.0)
