"""The local stack is real: partitions, consumer groups with committed offsets, the registry, restarts."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from settlement.schemas.user_trade_pb2 import UserTrade
from tests.conftest import OWNED
from tests.kafka_helpers import consumer, create_topics, drain, produce, unique_name

pytestmark = pytest.mark.integration


def _consume_and_commit(bootstrap: str, topic: str, group: str, expected: int) -> list[bytes]:
    c = consumer(bootstrap, group)
    c.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(values) < expected and time.monotonic() < deadline:
            batch = c.consume(num_messages=500, timeout=0.5)
            values.extend(m.value() for m in batch if not m.error())
            if batch:
                c.commit(asynchronous=False)
    finally:
        c.close()
    return values


def _committed(bootstrap: str, topic: str, group: str, partitions: int) -> list[int]:
    """Committed offsets; right after a broker restart the group coordinator may still be loading."""
    c = consumer(bootstrap, group)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
                break
            except KafkaException as exc:
                retriable = exc.args[0].code() in (
                    KafkaError.NOT_COORDINATOR,
                    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                    KafkaError.COORDINATOR_NOT_AVAILABLE,
                )
                if not retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        c.close()
    return [tp.offset for tp in tps]


def test_ten_thousand_records_through_a_six_partition_topic_with_committed_offsets(stack, new_topic) -> None:
    topic = new_topic("stack-10k", partitions=6)
    sent = produce(stack.bootstrap, topic, ((f"user_{i % 97}", f"v{i}".encode()) for i in range(10_000)))
    group = unique_name("g")

    got = _consume_and_commit(stack.bootstrap, topic, group, sent)

    assert Counter(got) == Counter(f"v{i}".encode() for i in range(10_000))
    committed = _committed(stack.bootstrap, topic, group, 6)
    assert sum(committed) == 10_000
    assert all(offset > 0 for offset in committed), committed  # the keys spread over all 6 partitions


def test_protobuf_round_trip_through_the_registry(stack, new_topic) -> None:
    topic = new_topic("stack-proto")
    ctx = SerializationContext(topic, MessageField.VALUE)
    serializer = ProtobufSerializer(
        UserTrade, SchemaRegistryClient({"url": stack.registry_url}), {"use.deprecated.format": False}
    )
    trade = UserTrade(regionid="Region_7", quantity=12, symbol="ZTEST", price=345, account="XYZ789", side="SELL")
    produce(stack.bootstrap, topic, [("User_3", serializer(trade, ctx))])

    # A fresh client: nothing cached, so the deserializer must fetch the writer schema by id.
    fresh = SchemaRegistryClient({"url": stack.registry_url})
    assert fresh.get_latest_version(f"{topic}-value").schema_id is not None  # (listing every subject pages at 1000)
    (msg,) = drain(stack.bootstrap, topic, 1)
    deserializer = ProtobufDeserializer(UserTrade, {"use.deprecated.format": False}, schema_registry_client=fresh)
    decoded = deserializer(msg.value(), ctx)
    assert decoded == trade
    schema_id = int.from_bytes(msg.value()[1:5], "big")
    assert fresh.get_schema(schema_id).schema_type == "PROTOBUF"


@pytest.mark.xdist_group(OWNED)
def test_broker_restart_keeps_data_and_committed_offsets(owned_stack) -> None:
    from devstack import stack as devstack

    stack = owned_stack
    topic = unique_name("stack-restart")
    create_topics(stack.bootstrap, [topic], 3)
    produce(stack.bootstrap, topic, ((f"k{i}", f"before-{i}".encode()) for i in range(300)))
    group = unique_name("g")
    assert len(_consume_and_commit(stack.bootstrap, topic, group, 300)) == 300

    state = devstack.load_state()
    assert state is not None
    old_pid = state.kafka_pid
    devstack.restart_broker(state)
    assert devstack.load_state().kafka_pid != old_pid  # type: ignore[union-attr]

    assert sum(_committed(stack.bootstrap, topic, group, 3)) == 300
    assert len(drain(stack.bootstrap, topic, 300)) == 300
    produce(stack.bootstrap, topic, ((f"k{i}", f"after-{i}".encode()) for i in range(30)))
    after = _consume_and_commit(stack.bootstrap, topic, group, 30)
    assert sorted(after) == sorted(f"after-{i}".encode() for i in range(30))  # resumed at the committed offsets


def test_up_while_running_is_a_no_op(stack) -> None:
    if not stack.owned:
        pytest.skip("not this run's stack")
    from devstack import stack as devstack

    before = devstack.load_state()
    state, started = devstack.up()
    assert started is False
    assert state == before
