"""Source reads for the ledger, through one read_committed consumer of the settled group: settled positions, the
group metadata transactions commit with, partition counts, and ranges of the source read back as the host hands
records over (gap repair, the repair timer). I/O only; what to read is decided in settlement/core/positions.py."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from settlement.core.deadline import Deadline
from settlement.core.errors import DeliveryError
from settlement.core.naming import settled_group
from settlement.core.records import InputRecord, host_key
from settlement.delivery.producer import LIBRDKAFKA_LOG

# Most gap records one batch settles before its own; a longer gap is settled in such steps by the following
# batches and the committer, each step committed, so that a long outage (or a new ledger on a topic with
# history) makes progress within each batch's deadline.
REPAIR_LIMIT = 5_000


class SourceReader:
    """One consumer, used under its lock (one read at a time per process)."""

    def __init__(self, group: str, consumer_conf: Mapping[str, Any], timeout_s: float) -> None:
        self._timeout_s = timeout_s  # bounds every read (a batch's deadline bounds it further)
        self._consumer = Consumer(
            {
                **consumer_conf,
                "group.id": settled_group(group),
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
        self._lock = threading.Lock()
        self._partition_counts: dict[str, int] = {}
        self.metadata = self._consumer.consumer_group_metadata()  # for send_offsets_to_transaction

    def settled_position(self, topic: str, partition: int, deadline: Deadline) -> int | None:
        """The partition's settled position as committed to the settled group (None: the ledger has none yet)."""
        tp = TopicPartition(topic, partition)
        with self._lock:
            (got,) = self._consumer.committed([tp], timeout=deadline.timeout(self._timeout_s))
        if got.error is not None:
            raise KafkaException(got.error)
        return None if got.offset < 0 else got.offset

    def partition_count(self, topic: str) -> int:
        """A topic's partition count (cached; 0 if it cannot be read)."""
        count = self._partition_counts.get(topic)
        if count is None:
            with self._lock:
                meta = self._consumer.list_topics(topic, timeout=self._timeout_s).topics.get(topic)
            count = len(meta.partitions) if meta is not None and meta.error is None else 0
            if count:
                self._partition_counts[topic] = count
        return count

    def read_range(
        self, topic: str, partition: int, start: int, end: int, deadline: Deadline, limit: int = REPAIR_LIMIT
    ) -> tuple[list[InputRecord], int]:
        """The source records in offsets [start, end) as read_committed consumers see them, shaped as the host
        hands them over (a key as UTF-8 text, a null value as empty bytes), at most `limit` of them; and the
        offset reading stopped at (`end`, or the first record left for later)."""
        out: list[InputRecord] = []
        with self._lock:
            self._consumer.assign([TopicPartition(topic, partition, start)])
            try:
                while True:
                    if deadline.passed():
                        raise DeliveryError(f"{topic}[{partition}] gap {start}..{end - 1} not read in time")
                    for msg in self._consumer.consume(500, timeout=0.005):
                        if msg.topic() != topic or msg.partition() != partition:
                            continue  # left from an earlier assignment
                        err = msg.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                return out, end
                            raise DeliveryError(f"reading {topic}[{partition}] for repair: {err}")
                        offset = msg.offset() or 0
                        if offset < start:
                            continue
                        if offset >= end:
                            return out, end
                        if len(out) == limit:
                            return out, offset
                        out.append(_as_host_record(msg, topic, partition))
                    position = self._consumer.position([TopicPartition(topic, partition)])[0].offset
                    if position >= end:
                        return out, end
            finally:
                self._consumer.unassign()

    def first_offset(self, topic: str, partition: int, deadline: Deadline) -> int:
        """The partition's first retained offset: where a new ledger begins, as a new consumer group with
        autoOffsetReset Earliest (host.json) does."""
        with self._lock:
            low, _ = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=deadline.timeout(self._timeout_s), cached=False
            )
        return int(low)

    def close(self) -> None:
        with self._lock:
            self._consumer.close()


def _as_host_record(msg: Any, topic: str, partition: int) -> InputRecord:
    """A record read from the source in the shape the trigger's path builds (runtime/triggers.py): the key as the
    host decodes it, a null value as empty bytes, a missing timestamp as None."""
    kind, stamp = msg.timestamp()
    return InputRecord(
        host_key(msg.key()),
        msg.value() or b"",
        topic,
        partition,
        int(msg.offset()),
        stamp if kind != 0 else None,
        tuple((name, value or b"") for name, value in (msg.headers() or [])),
    )
