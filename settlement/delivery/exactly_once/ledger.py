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
- a batch that starts beyond the position is preceded by the missing range (up to `source.REPAIR_LIMIT` records a
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
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from settlement.core import positions
from settlement.core.deadline import Deadline, timeout
from settlement.core.errors import DeliveryError
from settlement.core.naming import transactional_id
from settlement.delivery.exactly_once.fencing import Fenced, is_fenced
from settlement.delivery.exactly_once.partitions import Partitions, PartitionState
from settlement.delivery.exactly_once.source import SourceReader
from settlement.delivery.producer import kafka_error

log = logging.getLogger("settlement.ledger")


@dataclass(frozen=True)
class LedgerConfig:
    group: str
    commit_interval_s: float
    timeout_s: float  # bounds init, commit and repair reads (the batch deadline bounds them further)


class Ledger:
    """The transaction lifecycle of every source partition this process settles: take (fence and read the
    settled position), start, begin, commit with the position, abort, drop; and the queue of ranges whose
    transaction was lost. Its parts: the partition state (partitions.py), the source reads (source.py), the
    fencing classification (fencing.py), the names (core/naming.py); the background thread is committer.py."""

    def __init__(
        self,
        config: LedgerConfig,
        producer_conf: Mapping[str, Any],
        consumer_conf: Mapping[str, Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._producer_conf = dict(producer_conf)
        self.source = SourceReader(config.group, consumer_conf, config.timeout_s)
        self.partitions = Partitions()
        self._lock = threading.Lock()
        self._clock = clock
        self._closed = threading.Event()
        # Ranges whose transaction was lost in this process (up to the position it had reached): the committer
        # (committer.py) settles each again until it succeeds.
        self._lost: dict[tuple[str, int], int] = {}
        atexit.register(_close_at_exit, weakref.ref(self))

    def take(self, part: PartitionState, deadline: Deadline, fence: bool = False) -> None:
        """Take the partition: build its producer, fence every earlier holder, read the settled position. With
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
        try:
            # With an OAUTHBEARER callback the constructor waits for its first token (up to 10 s) and raises if
            # none came: a batch's failure to retry, like a broker that cannot fence now.
            producer = Producer(conf)
        except KafkaException as exc:
            raise DeliveryError(f"could not take {part.topic}[{part.partition}] for settling: {exc}") from None
        try:
            until = Deadline.after(timeout(deadline, self.config.timeout_s))
            while True:
                try:
                    producer.init_transactions(until.timeout())
                    break
                except KafkaException as exc:  # "retry call to resume": librdkafka asks for the call again
                    err = kafka_error(exc)
                    if err is None or not err.retriable() or until.left() <= 0:
                        raise
            part.committed = self.source.settled_position(part.topic, part.partition, deadline)
        except KafkaException as exc:
            _close(producer)
            raise DeliveryError(f"could not take {part.topic}[{part.partition}] for settling: {exc}") from None
        part.producer = producer
        part.reset()
        log.info("holding %s[%d], settled position %s", part.topic, part.partition, part.committed)

    def drop(self, part: PartitionState, lost: bool = False) -> None:
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

    def begin(self, part: PartitionState) -> Producer:
        """The partition's producer, inside an open transaction."""
        assert part.producer is not None
        if part.open_since is None:
            part.producer.begin_transaction()
            part.open_since = self._clock()
            log.debug("%s[%d]: transaction begun at position %s", part.topic, part.partition, part.position)
        return part.producer

    def commit(self, part: PartitionState, deadline: Deadline | None = None) -> None:
        """Commit the open transaction with the partition's position, retrying what librdkafka calls retriable
        (a broker restart, a coordinator move) until `deadline` (or the ledger's timeout). On a definite failure
        the producer is dropped, the range it held is queued for recovery unless another process fenced this
        one (that one repairs it), and `DeliveryError` (or `Fenced`) raised."""
        if part.open_since is None or part.producer is None or part.position is None:
            return
        until = Deadline.after(timeout(deadline, self.config.timeout_s))
        offsets = [TopicPartition(part.topic, part.partition, part.position)]
        sent = False
        while True:
            try:
                if not sent:
                    _send_offsets(part.producer, offsets, self.source.metadata, until.timeout())
                    sent = True
                part.producer.commit_transaction(until.timeout())
                break
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None and err.retriable() and not err.txn_requires_abort() and until.left() > 0:
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

    def abort(self, part: PartitionState, cause: BaseException) -> NoReturn:
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

    def abort_quietly(self, part: PartitionState, cause: BaseException) -> None:
        with suppress(DeliveryError):
            self.abort(part, cause)

    def due(self, part: PartitionState) -> bool:
        """The open transaction should be committed now: its interval passed."""
        return positions.commit_due(part.open_since, self._clock(), self.config.commit_interval_s)

    def start(self, part: PartitionState, deadline: Deadline) -> None:
        """Give a partition that has no settled position one: its first retained offset, committed at once in
        a transaction of its own, before anything of the batch is planned. Whatever the host delivered or gave
        up before (even batches that failed before the ledger existed) then lies in a gap that is repaired.
        To start a ledger elsewhere (an at-least-once deployment switched over), set the `<group>.settled`
        offsets first with Kafka's own tooling."""
        offset = self.source.first_offset(part.topic, part.partition, deadline)
        part.position = offset
        self.begin(part)
        self.commit(part, deadline)
        log.info("%s[%d]: the ledger begins at offset %d", part.topic, part.partition, offset)

    def advance(self, part: PartitionState, offset: int, deadline: Deadline) -> None:
        """Commit `offset` as the settled position with nothing written: a range that holds only transaction
        markers or aborted records (a source written under exactly_once_v2) has nothing to settle."""
        part.position = offset
        self.begin(part)
        self.commit(part, deadline)

    def commit_due(self) -> None:
        """The committer's round: commit every transaction left open past its interval by a quiet partition."""
        for part in self.partitions.all():
            if not self.due(part) or not part.lock.acquire(blocking=False):
                continue
            try:
                if self.due(part):
                    self.commit(part)
            except DeliveryError as exc:
                log.warning("background commit failed (the next batch or the repair timer settles it): %s", exc)
            finally:
                part.lock.release()

    def _queue_lost(self, part: PartitionState) -> None:
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
        for part in self.partitions.all():
            if not part.lock.acquire(timeout=timeout_s):
                continue
            try:
                self.commit(part)
            except DeliveryError as exc:
                log.warning("commit at close failed (the next holder repairs): %s", exc)
            finally:
                self.drop(part)
                part.lock.release()
        self.source.close()

    def queue_recovery(self, part: PartitionState, upto: int) -> None:
        """Have the committer settle the partition up to `upto` from the source (a gap too long for one batch)."""
        with self._lock:
            key = (part.topic, part.partition)
            self._lost[key] = max(self._lost.get(key, 0), upto)


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


def _close(producer: Producer) -> None:
    """Drop a producer without waiting: a fenced one can deliver nothing more, and what it held is aborted."""
    with suppress(Exception):
        producer.flush(0)


def _close_at_exit(ref: weakref.ref[Ledger]) -> None:
    ledger = ref()
    if ledger is not None and not ledger._closed.is_set():
        ledger.close(timeout_s=5.0)
