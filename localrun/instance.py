"""One function-app instance: a consumer in the trigger's group running the extension's consume → invoke →
store loop (localrun/extension.py).

On Azure each instance is its own worker process with its own static producer, so the local host runs each
instance as a process that imports the app itself (`spawn`): scale-out uses the machine's cores, and killing
an instance is a real process death (its stored-but-not-yet-committed offsets die with it). The consumer is
configured as the extension configures librdkafka: offsets stored after each batch and auto-committed every
`autoCommitIntervalMs`, `max.poll.interval.ms` from host.json, librdkafka's default eager assignor (a
rebalance revokes every partition). For tests and benchmarks that drive an in-process function, the same
loop runs in a thread.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from localrun.binding import TriggerBinding, invoke, load_binding
from localrun.extension import KafkaHostOptions, run_execution

log = logging.getLogger("localrun.instance")


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class InstanceSpec:
    """Everything an instance needs, picklable so a spawned process can receive it."""

    name: str
    options: KafkaHostOptions
    retry_scale: float = 1.0  # scales @app.retry back-off (fault scenarios run minutes of retries in seconds)
    fault: str | None = None  # see `_faulty`
    trace: bool = False  # report each batch's (partition, offset) list
    consumer_conf: Mapping[str, Any] = field(default_factory=dict)
    app: str | None = None  # "module:attribute" of the FunctionApp a process instance imports
    settings: Mapping[str, str] = field(default_factory=dict)  # the app settings of a process instance


def _faulty(function: Callable[..., Any], fault: str | None) -> Callable[..., Any]:
    """Inject faults into the function, comma-separated: `fail-first:N` (the first N invocations raise),
    `slow:S` (each takes at least S seconds before its work), `slow-after:S` (S seconds after its work, before
    the host stores the offsets), `fail-offset:P:O` (every invocation whose batch holds partition P offset O
    raises)."""
    if not fault:
        return function
    for one in reversed(fault.split(",")[1:]):
        function = _faulty(function, one)
    kind, _, arg = fault.split(",")[0].partition(":")
    state = {"calls": 0}

    def wrapped(**kwargs: Any) -> Any:
        state["calls"] += 1
        events = next(iter(kwargs.values()))
        if kind == "fail-first" and state["calls"] <= int(arg):
            raise RuntimeError("injected failure")
        if kind == "slow":
            time.sleep(float(arg))
        if kind == "fail-offset":
            partition, offset = (int(x) for x in arg.split(":"))
            if any(e.partition == partition and e.offset == offset for e in events):
                raise RuntimeError(f"injected failure: the batch holds {partition}:{offset}")
        result = function(**kwargs)
        if kind == "slow-after":
            time.sleep(float(arg))
        return result

    return wrapped


def next_offsets(batch: list[Message]) -> list[TopicPartition]:
    """The offsets to store after a batch: one past each partition's last record. A batch holds each
    partition's records in offset order, so the last one seen is the highest (the dict keeps it)."""
    last = {(m.topic(), m.partition()): m.offset() for m in batch}
    return [TopicPartition(str(t), int(p or 0), int(o or 0) + 1) for (t, p), o in sorted(last.items())]


class InstanceLoop:
    def __init__(
        self, spec: InstanceSpec, binding: TriggerBinding, emit: Callable[[dict[str, Any]], None], stop: StopFlag
    ) -> None:
        self.spec = spec
        self.binding = replace(binding, user_function=_faulty(binding.user_function, spec.fault))
        self.emit = emit
        self.stop = stop
        self.rng = random.Random(hash(spec.name))
        options = spec.options
        self.consumer = Consumer(
            {**options.consumer_conf(binding.broker_list, binding.consumer_group), **spec.consumer_conf}
        )

    def run(self) -> None:
        self.consumer.subscribe([self.binding.topic])
        try:
            while not self.stop.is_set():
                msgs = self.consumer.consume(self.spec.options.max_batch_size, self.spec.options.subscriber_interval_s)
                batch = [m for m in msgs if not _is_error(m)]
                if batch:
                    self._deliver(batch)
        finally:
            self.consumer.close()  # commits what was stored

    def _deliver(self, batch: list[Message]) -> None:
        def failed(n: int, exc: Exception) -> None:
            log.warning("%s: invocation %d on a batch of %d failed: %s", self.spec.name, n, len(batch), exc)

        execution = run_execution(
            lambda: invoke(self.binding, batch),
            self.spec.options,
            self.binding.retry,
            sleep=lambda s: time.sleep(s * self.spec.retry_scale),
            rng=self.rng,
            stopped=self.stop.is_set,
            on_failure=failed,
        )
        offsets = next_offsets(batch)
        stored = False
        if execution.store:
            try:
                self.consumer.store_offsets(offsets=offsets)
                stored = True
            except KafkaException as exc:
                # The partitions moved while the batch ran (eviction past max.poll.interval.ms, a rebalance):
                # the new owner starts from the last commit and the batch is redelivered.
                log.warning("%s: offsets not stored (%s); the batch will be redelivered", self.spec.name, exc)
        if execution.skipped:
            ranges = [
                f"{tp.topic}[{tp.partition}] offsets "
                f"{min(int(m.offset() or 0) for m in batch if m.partition() == tp.partition)}..{tp.offset - 1}"
                for tp in offsets
            ]
            log.error("%s: storing offsets past a failed batch; skipped %s", self.spec.name, "; ".join(ranges))
        self.emit(
            {
                "instance": self.spec.name,
                "pid": os.getpid(),
                "records": len(batch),
                "invocations": execution.invocations,
                "succeeded": execution.succeeded,
                "skipped": execution.skipped and stored,
                "stored": stored,
                "aborted": execution.aborted,
                "coords": [(int(m.partition() or 0), int(m.offset() or 0)) for m in batch] if self.spec.trace else [],
            }
        )


def _is_error(msg: Message) -> bool:
    err = msg.error()
    if err is None:
        return False
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", err)
    return True


def process_main(spec: InstanceSpec, events: Any, stop: Any) -> None:
    """Entry of a spawned instance process: set the app settings, import the app, index it, run the loop."""
    os.environ.update(spec.settings)
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s {spec.name} %(name)s: %(message)s")
    assert spec.app is not None
    module, _, attribute = spec.app.partition(":")
    app = getattr(importlib.import_module(module), attribute)
    InstanceLoop(spec, load_binding(app, os.environ), events.put, stop).run()


def thread_main(spec: InstanceSpec, binding: TriggerBinding, events: Any, stop: threading.Event) -> None:
    InstanceLoop(spec, binding, events.put, stop).run()
