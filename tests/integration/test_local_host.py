"""The local Kafka-trigger host follows the extension's semantics: binding read from function_app.py,
batches of at most maxBatchSize, per-partition order, commit after return, lag-driven scale-out."""

from __future__ import annotations

import threading
import time
import typing
from dataclasses import replace

import azure.functions as func
import pytest

from localrun.experiments.probes import Measurements, Probes
from localrun.platform.host import KafkaHostOptions, LocalHost, TriggerBinding, load_binding, local_settings, resolve
from localrun.platform.indexing import RetryPolicy
from scripts.capacity_model import Params, simulate
from tests.kafka_helpers import consumer, create_topics, produce, unique_name

pytestmark = pytest.mark.integration


def test_binding_is_read_from_function_app_and_resolved_from_settings() -> None:
    import function_app

    settings = local_settings()
    settings.update({"USER_TRADES_TOPIC": "ut", "KAFKA_CONSUMER_GROUP": "grp", "KAFKA_BOOTSTRAP_SERVERS": "b:1"})
    binding = load_binding(function_app.app, settings)
    assert (binding.function_name, binding.topic, binding.consumer_group, binding.broker_list) == (
        "settle_user_trades",
        "ut",
        "grp",
        "b:1",
    )
    assert (binding.cardinality, binding.data_type, binding.lag_threshold) == ("MANY", "BINARY", 1000)
    assert binding.retry is not None and (binding.retry.minimum_interval_s, binding.retry.maximum_interval_s) == (5, 60)
    options = KafkaHostOptions.from_host_json()
    assert (options.max_batch_size, options.commit_on_failure, options.max_retries) == (256, False, 2)
    assert (options.auto_commit_interval_ms, options.max_poll_interval_ms) == (200, 1_800_000)
    with pytest.raises(KeyError, match="%MISSING%"):
        resolve("%MISSING%", {})


def _recording_binding(stack, topic: str, lag_threshold: int, delay_s: float) -> tuple[TriggerBinding, list]:
    calls: list[tuple[str, list[tuple[int, int]]]] = []
    lock = threading.Lock()

    def function(events):  # type: ignore[no-untyped-def]
        time.sleep(delay_s)
        with lock:
            calls.append((threading.current_thread().name, [(e.partition, e.offset) for e in events]))

    binding = TriggerBinding(
        "f",
        topic,
        unique_name("grp"),
        stack.bootstrap,
        "MANY",
        "BINARY",
        lag_threshold,
        function,
        param_name="events",
        annotation=typing.List[func.KafkaEvent],  # noqa: UP006 - what the worker accepts
        retry=RetryPolicy("exponential_backoff", 1, 0.01, 0.02),
    )
    return binding, calls


def test_batches_keep_partition_order_and_commit_after_return(stack) -> None:
    topic = unique_name("host-order")
    create_topics(stack.bootstrap, [topic], partitions=3)
    produce(stack.bootstrap, topic, ((f"k{i}", b"v") for i in range(900)))
    binding, calls = _recording_binding(stack, topic, lag_threshold=10_000, delay_s=0.0)
    host = LocalHost(binding, replace(KafkaHostOptions(), max_batch_size=40), partitions=3)
    host.start(2)
    try:
        assert host.run_until(lambda: host.lag() == 0, timeout_s=60, autoscale=False, tick_s=0.1)
    finally:
        host.stop()
    assert all(len(batch) <= 40 for _, batch in calls)
    seen: dict[int, list[int]] = {}
    for _, batch in calls:
        for partition, offset in batch:
            seen.setdefault(partition, []).append(offset)
    assert sum(len(v) for v in seen.values()) == 900
    for offsets in seen.values():
        assert offsets == list(range(len(offsets)))  # in order, no gaps, no repeats
    c = consumer(stack.bootstrap, binding.consumer_group)
    from confluent_kafka import TopicPartition

    committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    c.close()
    assert sorted(tp.offset for tp in committed) == sorted(len(v) for v in seen.values())


def test_scale_out_adds_one_instance_per_evaluation_up_to_the_partition_count(stack) -> None:
    topic = unique_name("host-scale")
    create_topics(stack.bootstrap, [topic], partitions=3)
    produce(stack.bootstrap, topic, ((f"k{i}", b"v") for i in range(3000)))
    binding, calls = _recording_binding(stack, topic, lag_threshold=100, delay_s=0.05)
    host = LocalHost(
        binding,
        replace(KafkaHostOptions(), max_batch_size=10),
        partitions=3,
        evaluation_interval_s=0.5,
        scaling="incremental",
    )
    host.start(1)
    try:
        host.run_until(
            lambda: len(host.scale_events) >= 6 and len({name for name, _ in calls}) == 3, timeout_s=30, tick_s=0.05
        )
    finally:
        host.stop()
    counts = [n for _, n, _ in host.scale_events]
    assert counts[0] <= 2 and max(counts) == 3  # never more instances than partitions
    assert all(b - a in (0, 1) for a, b in zip([1, *counts], counts, strict=False))  # at most one per evaluation
    assert len({name for name, _ in calls}) == 3  # every instance did work
    # The capacity model predicts the same instance count at each evaluation as the host produced.
    model = simulate(
        Params(partitions=3, records=3000, batch_size=10, record_s=0.005, lag_threshold=100, interval_s=0.5),
        horizon_s=0.5 * len(counts),
        mode="incremental",
    )
    predicted = [pt.instances for pt in model[1:]]
    n = min(len(predicted), len(counts))
    assert n >= 3 and predicted[:n] == counts[:n]


def test_target_scaling_starts_what_the_lag_asks_for_at_once(stack) -> None:
    topic = unique_name("host-target")
    create_topics(stack.bootstrap, [topic], partitions=3)
    produce(stack.bootstrap, topic, ((f"k{i}", b"v") for i in range(3000)))
    binding, _calls = _recording_binding(stack, topic, lag_threshold=100, delay_s=0.05)
    host = LocalHost(binding, replace(KafkaHostOptions(), max_batch_size=10), partitions=3, evaluation_interval_s=0.5)
    host.start(1)
    try:
        host.run_until(lambda: len(host.scale_events) >= 2, timeout_s=30, tick_s=0.05)
    finally:
        host.stop()
    counts = [n for _, n, _ in host.scale_events]
    model = simulate(
        Params(partitions=3, records=3000, batch_size=10, record_s=0.005, lag_threshold=100, interval_s=0.5),
        horizon_s=1.0,
        mode="target",
    )
    assert counts[0] == 3 == model[1].instances  # ceil(lag / 100) capped at 3 partitions, in one evaluation


def test_a_full_executor_channel_paces_the_subscriber_by_the_retry_interval(stack) -> None:
    """The extension's subscriber sleeps channelFullRetryIntervalInMs while the channel is full: with a function
    faster than the interval, the interval sets the pace (each waiting batch waits whole intervals)."""
    topic = unique_name("host-channel")
    create_topics(stack.bootstrap, [topic], partitions=1)
    produce(stack.bootstrap, topic, ((f"k{i}", b"v") for i in range(100)))
    binding, calls = _recording_binding(stack, topic, lag_threshold=10_000, delay_s=0.0)
    options = replace(KafkaHostOptions(), max_batch_size=10, executor_channel_capacity=1)
    options = replace(options, channel_full_retry_interval_ms=200)
    host = LocalHost(binding, options, partitions=1)
    host.start(1)
    try:
        assert host.run_until(lambda: host.stats.records == 100, timeout_s=60, autoscale=False, tick_s=0.05)
    finally:
        host.stop()
    assert [len(batch) for _, batch in calls] == [10] * 10
    waits = host.stats.channel_wait_s
    # At most capacity + 1 batches get in per interval (the one the executor takes at once, then the channel's),
    # so of ten batches at least four wait, each a whole number of 200 ms intervals.
    assert waits >= 4 * 0.2 - 1e-9, waits
    assert abs(waits / 0.2 - round(waits / 0.2)) < 1e-6


def test_batches_left_in_the_channel_at_stop_are_redelivered_not_committed(stack) -> None:
    topic = unique_name("host-channel-stop")
    create_topics(stack.bootstrap, [topic], partitions=1)
    produce(stack.bootstrap, topic, ((f"k{i}", b"v") for i in range(100)))
    release = threading.Event()
    first: list[list[int]] = []

    def blocking(events):  # type: ignore[no-untyped-def]
        first.append([e.offset for e in events])
        release.wait(30)

    binding, _ = _recording_binding(stack, topic, lag_threshold=10_000, delay_s=0.0)
    binding = replace(binding, user_function=blocking)
    options = replace(KafkaHostOptions(), max_batch_size=10, executor_channel_capacity=2)
    host = LocalHost(binding, options, partitions=1)
    host.start(1)
    try:
        deadline = time.monotonic() + 30
        while not first and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the subscriber fills the channel (2 batches) and holds a third
        host.instances[0].stop.set()  # the instance stops after the running batch ...
        release.set()  # ... which then returns
    finally:
        host.stop()
    assert first == [list(range(10))]  # only the running batch was invoked
    c = consumer(stack.bootstrap, binding.consumer_group)
    from confluent_kafka import TopicPartition

    committed = c.committed([TopicPartition(topic, 0)], timeout=10)
    c.close()
    assert committed[0].offset == 10  # the running batch's offsets; the channel's batches go to the next owner


def test_the_hooks_shape_the_invoked_function_and_every_report_reaches_the_observers(stack) -> None:
    """The seam the experiments use (localrun/platform/hooks.py): an instance invokes the function its hooks hand
    it (here the probes' `fail-first:1`), and each batch's report, with the fields the hooks added, reaches the
    host's observers as well as its own counts."""
    topic = unique_name("host-hooks")
    create_topics(stack.bootstrap, [topic], partitions=1)
    produce(stack.bootstrap, topic, ((f"k{i}", b"v") for i in range(30)))
    binding, calls = _recording_binding(stack, topic, lag_threshold=10_000, delay_s=0.0)
    measurements = Measurements()
    host = LocalHost(
        binding,
        replace(KafkaHostOptions(), max_batch_size=10),
        partitions=1,
        hooks=Probes(function_fault="fail-first:1"),
        observers=[measurements],
    )
    host.start(1)
    try:
        assert host.run_until(lambda: host.stats.records == 30, timeout_s=60, autoscale=False, tick_s=0.05)
    finally:
        host.stop()
    # the first invocation failed before the function ran, its retry (the binding's @app.retry) succeeded
    assert (host.stats.invocations, host.stats.failures) == (len(calls) + 1, 1)
    assert sorted(o for _, batch in calls for _, o in batch) == list(range(30))
    assert sorted(measurements.ranges) == [(0, lo, hi) for lo, hi in _ranges(calls)]
    assert sum(measurements.latency.values()) == 30  # every record of the succeeded batches, once


def _ranges(calls: list[tuple[str, list[tuple[int, int]]]]) -> list[tuple[int, int]]:
    return sorted((batch[0][1], batch[-1][1]) for _, batch in calls)
