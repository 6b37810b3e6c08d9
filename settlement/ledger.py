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
- a record beyond the position, when the ledger cannot vouch for the gap, is preceded by the missing range,
  read from the source topic by the ledger itself (gap repair). The ledger vouches for a gap only while it
  has held the partition without a failure since its last repair: then the host delivered everything in
  between and the gap is transaction markers or aborted records, which read_committed consumers skip.

Transactions are kept open across batches and committed once `commit_interval_s` has passed (by the next
batch, or by a background committer), so their cost is paid a few times a second, not per batch. The
function returns to the host before its records are committed; a crash then loses the open transaction,
the host has moved its offset past it, and the next batch of the partition (on whichever instance) repairs
the range. The first transaction of a partition that has no settled position yet is committed before the
batch returns, so a position exists before the host can move past it.
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

from settlement.producer import DeliveryError
from settlement.records import InputRecord

log = logging.getLogger("settlement.ledger")

SETTLED_SUFFIX = ".settled"
# librdkafka's "no committed offset" value.
_NO_OFFSET = -1001
_FENCED = frozenset(
    code
    for code in (
        getattr(KafkaError, "_FENCED", None),
        getattr(KafkaError, "PRODUCER_FENCED", None),
        getattr(KafkaError, "INVALID_PRODUCER_EPOCH", None),
    )
    if code is not None
)


class Fenced(DeliveryError):
    """Another process initialised this partition's transactional id: what this one had open is aborted."""


def settled_group(group: str) -> str:
    """The consumer group holding each source partition's settled position (ACLs: the same prefix)."""
    return f"{group}{SETTLED_SUFFIX}"


def transactional_id(group: str, topic: str, partition: int) -> str:
    """One id per source partition, under the settled group's name so that one prefixed ACL covers both."""
    return f"{settled_group(group)}.{topic}.{partition}"


def kafka_error(exc: BaseException) -> KafkaError | None:
    arg = exc.args[0] if exc.args else None
    return arg if isinstance(arg, KafkaError) else None


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
        self.trusted = False  # True: a gap before the next record is markers, not a range the host skipped

    def reset(self) -> None:
        """Forget the open transaction (aborted or lost): the next batch repairs from the committed position."""
        self.position = self.committed
        self.open_since = None
        self.trusted = False


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
            }
        )
        self._metadata = self._consumer.consumer_group_metadata()
        self._consumer_lock = threading.Lock()
        self._partitions: dict[tuple[str, int], PartitionLedger] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._closed = threading.Event()
        self._partition_counts: dict[str, int] = {}
        ref = weakref.ref(self)
        self._committer = threading.Thread(target=_commit_loop, args=(ref, self._closed), daemon=True)
        self._committer.name = "settlement-ledger-committer"
        self._committer.start()
        atexit.register(_close_at_exit, ref)

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

    def ready(self, part: PartitionLedger, deadline: float) -> None:
        """Hold the partition: build its producer, fence every earlier holder, read the settled position."""
        if part.producer is not None:
            return
        conf = {
            **self._producer_conf,
            "transactional.id": transactional_id(self.config.group, part.topic, part.partition),
        }
        producer = Producer(conf)
        try:
            producer.init_transactions(self._bounded(deadline))
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

    def drop(self, part: PartitionLedger) -> None:
        """Give up the partition's producer (fenced, or unusable): the next batch takes it again."""
        if part.producer is not None:
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
        return part.producer

    def commit(self, part: PartitionLedger, deadline: float | None = None) -> None:
        """Commit the open transaction with the partition's position; on failure it is aborted (the caller
        decides whether to retry) and `DeliveryError` (or `Fenced`) raised."""
        if part.open_since is None or part.producer is None or part.position is None:
            return
        timeout = self._bounded(deadline)
        offsets = [TopicPartition(part.topic, part.partition, part.position)]
        try:
            part.producer.send_offsets_to_transaction(offsets, self._metadata, timeout)
            part.producer.commit_transaction(timeout)
        except KafkaException as exc:
            # A commit that timed out may still complete on the coordinator: never guess. Dropping the producer
            # makes the next batch fence again, which waits for that outcome, and re-read the position.
            self.drop(part)
            if is_fenced(exc):
                raise Fenced(f"{part.topic}[{part.partition}]: {exc}") from None
            raise DeliveryError(f"{part.topic}[{part.partition}] commit failed: {exc}") from None
        part.committed = part.position
        part.open_since = None

    def abort(self, part: PartitionLedger, cause: BaseException) -> NoReturn:
        """Abort the open transaction (its records become invisible to read_committed readers) and raise why."""
        fenced = is_fenced(cause)
        if not fenced and part.producer is not None:
            try:
                part.producer.abort_transaction(self.config.timeout_s)
            except KafkaException as exc:
                fenced = True  # an abort that fails leaves the producer unusable either way
                cause = exc
        if fenced:
            self.drop(part)
            raise Fenced(f"{part.topic}[{part.partition}]: {cause}") from None
        part.reset()
        raise DeliveryError(f"{part.topic}[{part.partition}] transaction aborted: {cause}") from None

    def abort_quietly(self, part: PartitionLedger, cause: BaseException) -> None:
        with suppress(DeliveryError):
            self.abort(part, cause)

    def due(self, part: PartitionLedger) -> bool:
        """The open transaction should be committed now: its interval passed, or the ledger had no position."""
        if part.open_since is None:
            return False
        return part.committed is None or self._clock() - part.open_since >= self.config.commit_interval_s

    def commit_due(self) -> None:
        """The committer's round: commit every transaction left open past its interval by a quiet partition."""
        for part in list(self._partitions.values()):
            if not self.due(part) or not part.lock.acquire(blocking=False):
                continue
            try:
                if self.due(part):
                    self.commit(part)
            except DeliveryError as exc:
                log.warning("background commit failed (the next batch repairs): %s", exc)
            finally:
                part.lock.release()

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

    def read_gap(self, part: PartitionLedger, start: int, end: int, deadline: float) -> list[InputRecord]:
        """The source records in offsets [start, end) as read_committed consumers see them, shaped as the host
        hands them over (a key as UTF-8 text, a null value as empty bytes)."""
        out: list[InputRecord] = []
        tp = TopicPartition(part.topic, part.partition, start)
        with self._consumer_lock:
            self._consumer.assign([tp])
            try:
                while True:
                    if time.monotonic() > deadline:
                        raise DeliveryError(f"{part.topic}[{part.partition}] gap {start}..{end - 1} not read in time")
                    msgs = self._consumer.consume(500, timeout=0.1)
                    done = False
                    for msg in msgs:
                        err = msg.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                done = True
                                continue
                            raise DeliveryError(f"reading {part.topic}[{part.partition}] for repair: {err}")
                        offset = msg.offset() or 0
                        if offset >= end:
                            done = True
                            break
                        out.append(_as_host_record(msg, part.topic, part.partition))
                    if done:
                        return out
                    position = self._consumer.position([TopicPartition(part.topic, part.partition)])[0].offset
                    if position >= end:
                        return out
            finally:
                self._consumer.unassign()

    def _bounded(self, deadline: float | None) -> float:
        if deadline is None:
            return self.config.timeout_s
        return max(0.1, min(self.config.timeout_s, deadline - time.monotonic()))


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


def _commit_loop(ref: weakref.ref[Ledger], closed: threading.Event) -> None:
    while not closed.is_set():
        ledger = ref()
        if ledger is None:
            return
        interval = ledger.config.commit_interval_s
        try:
            ledger.commit_due()
        except Exception:
            log.exception("ledger committer round failed")
        del ledger
        closed.wait(max(0.005, interval / 4))


def _close_at_exit(ref: weakref.ref[Ledger]) -> None:
    ledger = ref()
    if ledger is not None and not ledger._closed.is_set():
        ledger.close(timeout_s=5.0)
