"""Kafka chores the local tooling shares (the experiments, the tests, the benchmarks): create topics, read a topic
whole, count its records. Not a model of the platform: Azure creates no topic and reads no output back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence

from confluent_kafka import Consumer, IsolationLevel, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from settlement.schemas import TradeSettlement


def create_topics(
    bootstrap: str,
    partitions_by_topic: Mapping[str, int],
    config: Mapping[str, str] | None = None,
    replication_factor: int = 1,
) -> None:
    """Create topics and wait until they exist: replication 1 on the one-node stack, 3 on the cluster
    (where the caller also asks for min.insync.replicas 2, as on Confluent Cloud)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the futures resolve
    new = [
        NewTopic(name, num_partitions=n, replication_factor=replication_factor, config=dict(config or {}))
        for name, n in partitions_by_topic.items()
    ]
    for future in admin.create_topics(new).values():
        future.result(timeout=30)
    _wait_for_leaders(admin, partitions_by_topic, deadline=time.monotonic() + 30)


def _wait_for_leaders(admin: AdminClient, partitions_by_topic: Mapping[str, int], deadline: float) -> None:
    """The controller has answered CreateTopics; wait until the brokers' metadata serves every partition with a
    leader too. Until then a client that asks at once may be told the topic does not exist (seen on a loaded
    machine: a smoke check's first metadata request, right after its topics were created)."""
    while True:
        topics = admin.list_topics(timeout=10).topics
        ready = all(
            (meta := topics.get(name)) is not None
            and meta.error is None
            and len(meta.partitions) == n
            and all(p.leader >= 0 for p in meta.partitions.values())
            for name, n in partitions_by_topic.items()
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {sorted(partitions_by_topic)} created, but not all served with a leader")
        time.sleep(0.05)


def fresh_consumer(bootstrap: str, prefix: str) -> Consumer:
    """A consumer in a group of its own, reading from the beginning, committing nothing by itself."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def high_watermarks(bootstrap: str, topic: str) -> int:
    """Records in a topic (no compaction, no transactions: the sum of high watermarks)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions)
    finally:
        c.close()


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[Message]:
    """Read a topic from the start until `expected` records arrived or the timeout passed."""
    c = fresh_consumer(bootstrap, "read-all")
    c.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(m for m in c.consume(1000, timeout=0.5) if m.error() is None)
    finally:
        c.close()
    return out


def header(msg: Message, name: str) -> str:
    """A record header as text ("" when absent)."""
    value = dict(msg.headers() or []).get(name)
    return value.decode() if isinstance(value, bytes) else (value or "")


def settlement_of(msg: Message) -> TradeSettlement:
    """Decode a settlement written by our encoder (6-byte Confluent framing, message index [0])."""
    return TradeSettlement.FromString((msg.value() or b"")[6:])


def read_to_end(
    bootstrap: str, topic: str, isolation: str = "read_committed", timeout_s: float = 60.0
) -> list[Message]:
    """Every record of a topic that a reader at `isolation` sees, up to each partition's end as of now (for a
    read_committed reader, the last stable offset): transactional topics have markers and aborted records,
    so their high watermarks do not count records."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-to-end-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    out: list[Message] = []
    try:
        partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.2):
                err = m.error()
                if err is None:
                    out.append(m)
                elif err.code() == KafkaError._PARTITION_EOF:
                    ends.pop(m.partition() or 0, None)
        if ends:
            raise TimeoutError(f"{topic}: partitions {sorted(ends)} not read to their end in {timeout_s:.0f} s")
    finally:
        c.close()
    return out


def topic_partitions(admin: AdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of these topics."""
    return [TopicPartition(t, p) for t in topics for p in admin.list_topics(t, timeout=10).topics[t].partitions]


def partition_ends(
    admin: AdminClient, tps: Sequence[TopicPartition], level: IsolationLevel
) -> dict[TopicPartition, int]:
    """Each partition's end as a reader at `level` sees it: the high watermark (read_uncommitted) or the last
    stable offset (read_committed), one request for all of them."""
    ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}, isolation_level=level, request_timeout=10)
    return {tp: f.result().offset for tp, f in ends.items()}


def nothing_pending(bootstrap: str, topics: Sequence[str]) -> bool:
    """No open transaction holds anything back on these topics: every partition's last stable offset (what a
    read_committed reader can reach) equals its high watermark."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tps = topic_partitions(admin, topics)
    return partition_ends(admin, tps, IsolationLevel.READ_UNCOMMITTED) == partition_ends(
        admin, tps, IsolationLevel.READ_COMMITTED
    )
