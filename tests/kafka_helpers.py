"""Small helpers the integration tests share: create topics, produce, drain a topic."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, Message, Producer

from localrun.experiments import kafka as localrun_kafka


def unique_name(prefix: str) -> str:
    """A topic/group name no other test uses, so tests never see each other's records."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1) -> None:
    """Same partition count for every name; localrun.experiments.kafka.create_topics does the work."""
    localrun_kafka.create_topics(bootstrap, dict.fromkeys(names, partitions))


def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | str | None, bytes | None]], partition: int | None = None
) -> int:
    """Produce (key, value) pairs and wait for every acknowledgement; returns the count."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    errors: list[str] = []

    def on_delivery(err, _msg):  # type: ignore[no-untyped-def]
        if err is not None:
            errors.append(str(err))

    count = 0
    for key, value in records:
        kwargs = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0 and not errors, f"undelivered={remaining} errors={errors[:3]}"
    return count


def consumer(bootstrap: str, group: str, **extra: object) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    conf.update(extra)
    return Consumer(conf)


def drain(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Message]:
    """Read a topic from the start until `expected` records arrived (or time out); no commits."""
    c = localrun_kafka.fresh_consumer(bootstrap, "drain")
    c.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    raise KafkaException(msg.error())
                got.append(msg)
        # Linger briefly so an over-delivery (more than expected) is visible to the caller.
        for msg in c.consume(num_messages=1000, timeout=0.5):
            if not msg.error():
                got.append(msg)
    finally:
        c.close()
    return got


def release_clients() -> None:
    """The app's clients closed and any left in a reference cycle collected, on the calling (test) thread: none may
    be left retrying a broker that is going away (it would log after pytest's summary), and a keyless one left to a
    later collection could be destroyed on its own librdkafka thread, which aborts the process (it did: a test
    process died in a later test)."""
    import gc

    app = sys.modules.get("function_app")  # never imported here: importing the app would start its warm start
    if app is not None:
        app.root.reset(producer_timeout_s=1)
    gc.collect()
