"""One function-app instance: a consumer in the trigger's group running the extension's consume → invoke →
store loop (localrun/platform/extension.py).

On Azure each instance is its own worker process with its own static producer, so the local host runs each
instance as a process that imports the app itself (`spawn`): scale-out uses the machine's cores, and killing
an instance is a real process death (its stored-but-not-yet-committed offsets die with it). The consumer is
configured as the extension configures librdkafka: offsets stored after each batch and auto-committed every
`autoCommitIntervalMs`, `max.poll.interval.ms` from host.json, librdkafka's default eager assignor (a
rebalance revokes every partition). As in the extension, a subscriber thread consumes while the function
runs and hands batches over through a channel of `executorChannelCapacity` batches, sleeping
`channelFullRetryIntervalInMs` while the channel is full; batches still in the channel when the instance
stops are dropped (the next owner reads them again from the last commit). For tests and benchmarks that
drive an in-process function, the same loop runs in a thread.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import math
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from localrun.platform.accounting import batch_ranges, latency_buckets
from localrun.platform.binding import TriggerBinding, invoke, load_binding
from localrun.platform.extension import KafkaHostOptions, invalid_traceparent, run_execution

log = logging.getLogger("localrun.instance")
_CONSUME_SLICE_S = 0.005  # longest a store waits for the subscriber's consume call to return


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
    # Export the process's metrics every this many ms to the host as `customMetrics` rows, as the Azure Monitor
    # distro exports them (localrun/platform/appinsights.py); also the process's OTEL_METRIC_EXPORT_INTERVAL.
    export_interval_ms: int | None = None
    # The host's tracing listens to the Kafka extension's ActivitySource (telemetryMode OpenTelemetry with its
    # source subscribed): a batch holding a traceparent .NET refuses is then never invoked (extension.py)
    tracing: bool = False


def _faulty(function: Callable[..., Any], fault: str | None) -> Callable[..., Any]:
    """Inject faults into the function, comma-separated: `fail-first:N` (the first N invocations raise),
    `fail-after-first:N` (the first N invocations raise after their work), `slow:S` (each takes at least S
    seconds before its work), `slow-after:S` (S seconds after its work, before the host stores the offsets),
    `fail-offset:P:O` (every invocation whose batch holds partition P offset O raises)."""
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
        if kind == "fail-after-first" and state["calls"] <= int(arg):
            raise RuntimeError("injected failure after the batch was written")
        return result

    return wrapped


def coordinates(batch: list[Message]) -> list[tuple[int, int]]:
    """A batch's records as (partition, offset) pairs, in the order they were consumed."""
    return [(int(m.partition() or 0), int(m.offset() or 0)) for m in batch]


def next_offsets(topic: str, coords: list[tuple[int, int]]) -> list[TopicPartition]:
    """The offsets to store after a batch: one past each partition's last record consumed (the dict keeps the
    last). That is the consumer's position: normally the highest offset, but after a rebalance hands a partition
    back while the batch fills it can be lower, and storing it then only has those records read again."""
    return [TopicPartition(topic, p, o + 1) for p, o in sorted(dict(coords).items())]


class InstanceLoop:
    def __init__(
        self, spec: InstanceSpec, binding: TriggerBinding, emit: Callable[[dict[str, Any]], None], stop: StopFlag
    ) -> None:
        self.spec = spec
        self.binding = replace(binding, user_function=_faulty(binding.user_function, spec.fault))
        self.emit = emit
        self.stop = stop
        self.rng = random.Random(hash(spec.name))
        self._stopping = threading.Event()  # set by the executor once it has left its loop
        self._turns = _Turns()
        options = spec.options
        self.consumer = Consumer(
            {**options.consumer_conf(binding.broker_list, binding.consumer_group), **binding.auth, **spec.consumer_conf}
        )

    def run(self, drain: StopFlag | None = None) -> bool:
        """The executor: run each batch the subscriber hands over, in order, until the instance stops (a graceful
        close, the harness's own teardown) or drains (the platform's scale-in). Returns whether it drained.

        Draining is what the host does to an instance it removes (read from its source, docs/operations.md
        "What scale-in does to an instance"): the listener stops consuming, the executor runs the batches already
        in its channel, the consumer unsubscribes (the stored offsets auto-committed, the group left) and is
        disposed without a close; then the host kills the worker process (the Python worker handles no terminate
        message: `Process.Kill`, SIGKILL). Nothing of the function's own runs after its last invocation."""
        channel = _Channel(self.spec.options.executor_channel_capacity)
        failure: list[BaseException] = []
        subscriber = threading.Thread(
            target=self._subscribe, args=(channel, failure), name=f"{self.spec.name}-subscriber", daemon=True
        )
        self.consumer.subscribe([self.binding.topic])
        subscriber.start()
        drained = False
        try:
            while not self.stop.is_set():
                if drain is not None and drain.is_set():
                    self._stopping.set()
                    while not self.stop.is_set() and (item := channel.get(timeout_s=0)) is not None:
                        self._deliver(*item)
                    drained = True
                    break
                item = channel.get(timeout_s=0.05)
                if item is None:
                    if not subscriber.is_alive():
                        break
                    continue
                self._deliver(*item)
        finally:
            self._stopping.set()
            subscriber.join()
            if drained:
                # librdkafka's auto-commit sends what was stored within its interval; unsubscribing revokes (with a
                # commit of the stored offsets) and leaves the group. No close: the process is killed next.
                time.sleep(self.spec.options.auto_commit_interval_ms / 1000 + 0.05)
                self.consumer.unsubscribe()
            else:
                self.consumer.close()  # commits what was stored
        if failure:
            raise failure[0]
        return drained

    def _subscribe(self, channel: _Channel, failure: list[BaseException]) -> None:
        """The extension's subscriber thread: consume up to maxBatchSize records within the subscriber interval,
        then put the batch in the channel, sleeping the retry interval while it is full (no polling then)."""
        options = self.spec.options
        retry_s = options.channel_full_retry_interval_ms / 1000
        idle_s = options.subscriber_idle_backoff_ms / 1000
        try:
            while not self._stopping.is_set():
                batch = self._consume_window(options.max_batch_size, options.subscriber_interval_s)
                if batch:
                    channel.put_on_tick(batch, retry_s, self._stopping)
                if idle_s and len(batch) < options.max_batch_size:
                    self._stopping.wait(idle_s)  # 4.3.1's idle back-off, after any window short of a full batch
        except BaseException as exc:  # noqa: BLE001 - handed to the executor, which re-raises it
            failure.append(exc)

    def _consume_window(self, max_size: int, window_s: float) -> list[Message]:
        """Up to `max_size` records consumed within `window_s`, in short slices: confluent-kafka lets one call
        at a time into a consumer and makes a concurrent caller wait, so a store between slices is not held up
        by a whole window (the extension's .NET client has no such limit)."""
        batch: list[Message] = []
        deadline = time.monotonic() + window_s
        while len(batch) < max_size and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with self._turns.consuming():
                msgs = self.consumer.consume(max_size - len(batch), min(left, _CONSUME_SLICE_S))
            batch.extend(m for m in msgs if not _is_error(m))
        return batch

    def _deliver(self, batch: list[Message], waited_s: float) -> None:
        if self.spec.tracing and self._activity_throws(batch, waited_s):
            return

        def failed(n: int, exc: Exception) -> None:
            log.warning("%s: invocation %d on a batch of %d failed: %s", self.spec.name, n, len(batch), exc)

        started = time.perf_counter()
        execution = run_execution(
            lambda: invoke(self.binding, batch),
            self.spec.options,
            self.binding.retry,
            sleep=lambda s: time.sleep(s * self.spec.retry_scale),
            rng=self.rng,
            stopped=self.stop.is_set,
            on_failure=failed,
        )
        done_ms = time.time() * 1000
        coords = coordinates(batch)
        stored = execution.store and self._store(next_offsets(self.binding.topic, coords))
        ranges = batch_ranges(coords)
        if execution.skipped:
            skipped = "; ".join(f"{self.binding.topic}[{p}] offsets {lo}..{hi}" for p, lo, hi in ranges)
            log.error("%s: storing offsets past a failed batch; skipped %s", self.spec.name, skipped)
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
                "channel_wait_s": waited_s,
                "busy_s": time.perf_counter() - started,
                "coords": coords if self.spec.trace else [],
                "ranges": ranges,
                "latency": latency_buckets((m.timestamp()[1] for m in batch), done_ms) if execution.succeeded else {},
            }
        )

    def _activity_throws(self, batch: list[Message], waited_s: float) -> bool:
        """The extension's batch activity, built before the invocation when tracing listens: a record whose
        traceparent .NET cannot parse throws, the reader logs it and goes on to the next batch, nothing of this one
        invoked or stored (localrun/platform/extension.py)."""
        for message in batch:
            error = invalid_traceparent(message.headers() or [])  # type: ignore[arg-type]  # (str, bytes | None)
            if error is not None:
                break
        else:
            return False
        ranges = batch_ranges(coordinates(batch))
        where = "; ".join(f"{self.binding.topic}[{p}] offsets {lo}..{hi}" for p, lo, hi in ranges)
        log.error("%s: Error in executor reader: %s (a batch never invoked: %s)", self.spec.name, error, where)
        self.emit(
            {
                "instance": self.spec.name,
                "pid": os.getpid(),
                "records": len(batch),
                "invocations": 0,
                "succeeded": False,
                "skipped": False,
                "stored": False,
                "aborted": False,
                "dropped": True,
                "channel_wait_s": waited_s,
                "busy_s": 0.0,
                "coords": coordinates(batch) if self.spec.trace else [],
                "ranges": ranges,
            }
        )
        return True

    def _store(self, offsets: list[TopicPartition]) -> bool:
        """Store a batch's offsets as the extension's `AsyncCommitStrategy` does: one `StoreOffset` per partition,
        the first refusal ending the loop (`FunctionExecutorBase.Commit` logs it). A single call for all of them
        would differ: librdkafka then stores the partitions it still owns and reports nothing unless none was."""
        with self._turns.storing():  # one turn for the whole loop: a consume slice between two stores costs up to 5 ms
            for tp in offsets:
                try:
                    self.consumer.store_offsets(offsets=[tp])
                except KafkaException as exc:
                    # The partition moved while the batch ran (eviction past max.poll.interval.ms, a rebalance):
                    # the new owner starts from the last commit and reads the batch again.
                    log.warning(
                        "%s: offsets not stored from %s[%d] on (%s); the batch will be redelivered",
                        self.spec.name,
                        tp.topic,
                        tp.partition,
                        exc,
                    )
                    return False
        return True


class _Channel:
    """The extension's bounded executor channel. When it is full the subscriber sleeps the retry interval and
    tries again; the first try that finds room comes at the first whole interval after the executor made room.
    Rather than wake every interval (a thread waking every millisecond costs a Python process its GIL), the
    subscriber here waits for room and then sleeps to that interval's end, which puts each batch in at the
    moment the extension's polling would."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: collections.deque[tuple[list[Message], float]] = collections.deque()
        self._cond = threading.Condition()

    def put_on_tick(self, batch: list[Message], retry_s: float, stopping: threading.Event) -> None:
        """Put `batch` in, as the extension's subscriber would, unless the instance stops first."""
        full_at = time.monotonic()
        with self._cond:
            if len(self._items) < self._capacity:
                self._items.append((batch, 0.0))
                self._cond.notify_all()
                return
            while len(self._items) >= self._capacity and not stopping.is_set():
                self._cond.wait(0.05)
        if stopping.is_set():
            return
        tries = max(1, math.ceil((time.monotonic() - full_at) / retry_s))
        stopping.wait(max(0.0, full_at + tries * retry_s - time.monotonic()))
        with self._cond:  # the subscriber is the only writer: the room it saw is still there
            self._items.append((batch, tries * retry_s))
            self._cond.notify_all()

    def get(self, timeout_s: float) -> tuple[list[Message], float] | None:
        """The next batch and how long it waited for room, or None after `timeout_s` without one."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout_s)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item


class _Turns:
    """Takes turns on the consumer between the subscriber's consume slices and the executor's stores, a
    waiting store going first: confluent-kafka makes a second caller poll until the first leaves, and a
    subscriber calling consume back to back would starve it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._consuming = False
        self._stores_waiting = 0

    @contextlib.contextmanager
    def consuming(self) -> Iterator[None]:
        with self._cond:
            while self._stores_waiting:
                self._cond.wait()
            self._consuming = True
        try:
            yield
        finally:
            with self._cond:
                self._consuming = False
                self._cond.notify_all()

    @contextlib.contextmanager
    def storing(self) -> Iterator[None]:
        with self._cond:
            self._stores_waiting += 1
            while self._consuming:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._stores_waiting -= 1
                self._cond.notify_all()


def _is_error(msg: Message) -> bool:
    err = msg.error()
    if err is None:
        return False
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", err)
    return True


_reader: Any = None  # the process's in-memory OpenTelemetry reader (see _metric_reader)


def _import_app(spec: InstanceSpec, emit: Callable[[dict[str, Any]], None]) -> Any:
    """Set the app settings and import the app, as a worker process does; with an OpenTelemetry SDK meter provider
    installed, as on Azure where Application Insights is configured (deploy.sh always wires it): every instance
    then pays what recording the app's metrics costs there. With `export_interval_ms`, its metrics are exported to
    the host that often, as `customMetrics` rows."""
    global _reader
    os.environ.update(spec.settings)
    if spec.export_interval_ms is not None:
        os.environ["OTEL_METRIC_EXPORT_INTERVAL"] = str(spec.export_interval_ms)
    _reader = _metric_reader(spec, emit)
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s %(levelname)s {spec.name} %(name)s: %(message)s")
    for name in filter(None, os.environ.get("LOCALRUN_DEBUG", "").split(",")):  # loggers to show at DEBUG
        logging.getLogger(name).setLevel(logging.DEBUG)
    assert spec.app is not None
    module, _, attribute = spec.app.partition(":")
    return getattr(importlib.import_module(module), attribute)


def process_main(spec: InstanceSpec, events: Any, stop: Any, drain: Any = None, timers: Any = None) -> None:
    """Entry of a spawned instance process: set the app settings, import the app, index it, run the loop; with
    `timers` (Premium: every instance runs every function), also run the timer invocations sent there. A drained
    instance waits to be killed, as a worker the host disposes of does."""
    app = _import_app(spec, events.put)
    if timers is not None:
        serving = threading.Thread(target=serve_timers, args=(spec, app, timers, events.put, stop), daemon=True)
        serving.name = f"{spec.name}-timers"
        serving.start()
    if InstanceLoop(spec, load_binding(app, os.environ), events.put, stop).run(drain):
        events.put({"kind": "drained", "instance": spec.name, "pid": os.getpid()})
        while not stop.is_set():  # the host's Process.Kill comes next
            time.sleep(0.2)


def timer_process_main(spec: InstanceSpec, events: Any, stop: Any, timers: Any) -> None:
    """Entry of a Flex Consumption timer instance: the app imported, only timer invocations run."""
    app = _import_app(spec, events.put)
    serve_timers(spec, app, timers, events.put, stop)


def serve_timers(
    spec: InstanceSpec, app: Any, commands: Any, emit: Callable[[dict[str, Any]], None], stop: Any
) -> None:
    """Run each timer invocation the host sends (`(function name, past due)`), one at a time, reporting each."""
    from localrun.platform.timers import invoke_timer, load_timers

    bindings = {t.function_name: t for t in load_timers(app, os.environ)}
    reader = _reader
    while not stop.is_set():
        try:
            name, past_due = commands.get(timeout=0.2)
        except queue.Empty:
            continue
        started = time.monotonic()
        started_at = time.time()
        error = None
        try:
            invoke_timer(bindings[name], past_due)
        except Exception as exc:  # noqa: BLE001 - the host logs a failed timer run and fires the next one on time
            error = f"{type(exc).__name__}: {exc}"
        emit(
            {
                "kind": "timer",
                "function": name,
                "instance": spec.name,
                "pid": os.getpid(),
                "elapsed_s": time.monotonic() - started,
                "error": error,
                "lag": _lag_gauges(reader),
                "repaired": _repaired(spec),
                "run": _repair_run(spec),
                "started_at": started_at,
                "ended_at": time.time(),
            }
        )


def _current_repair(spec: InstanceSpec) -> Any:
    """The repair this process's timer runs built, if any, read from the app module's composition root (`root`,
    settlement/runtime/root.py): nothing is built here."""
    assert spec.app is not None
    services = importlib.import_module(spec.app.partition(":")[0]).root.current()
    return None if services is None else services.current_repair()


def _repaired(spec: InstanceSpec) -> int:
    repair = _current_repair(spec)
    return 0 if repair is None or repair.last is None else repair.last.settled


def _repair_run(spec: InstanceSpec) -> dict[int, tuple[int, float, int, int]]:
    """What this process's latest repair run measured per partition, (records, seconds, waiting), and settled."""
    repair = _current_repair(spec)
    if repair is None or repair.last is None:
        return {}
    return {p.partition: (p.offsets.lag, p.lag_s, p.offsets.waiting, p.settled) for p in repair.last.partitions}


def _metric_reader(spec: InstanceSpec, emit: Callable[[dict[str, Any]], None]) -> Any:
    """An in-memory OpenTelemetry reader for this process's instruments, or None where a provider is configured
    already; with `export_interval_ms`, also the periodic reader that exports them to the host as `customMetrics`
    rows (what Application Insights would be sent on Azure)."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    if isinstance(metrics.get_meter_provider(), MeterProvider):
        return None
    reader = InMemoryMetricReader()
    readers: list[Any] = [reader]
    if spec.export_interval_ms is not None:
        from localrun.platform.appinsights import periodic_reader

        def export(rows: list[dict[str, Any]]) -> None:
            emit({"kind": "metrics", "instance": spec.name, "pid": os.getpid(), "rows": rows})

        readers.append(periodic_reader(export, spec.export_interval_ms))
    metrics.set_meter_provider(MeterProvider(metric_readers=readers))
    return reader


def _lag_gauges(reader: Any) -> dict[int, tuple[int, float]]:
    """Settlement lag per partition as the repair's gauges hold it now (`settlement.lag.records` and
    `settlement.lag.seconds`, read back from the instruments, not computed again)."""
    from settlement.telemetry import LAG_RECORDS, LAG_SECONDS

    if reader is None:
        return {}
    values: dict[str, dict[int, float]] = {LAG_RECORDS: {}, LAG_SECONDS: {}}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name in values:
                    for point in metric.data.data_points:
                        values[metric.name][int(point.attributes["partition"])] = point.value
    return {p: (int(n), values[LAG_SECONDS].get(p, 0.0)) for p, n in values[LAG_RECORDS].items()}


def thread_main(
    spec: InstanceSpec, binding: TriggerBinding, events: Any, stop: threading.Event, drain: Any = None
) -> None:
    if InstanceLoop(spec, binding, events.put, stop).run(drain):
        events.put({"kind": "drained", "instance": spec.name, "pid": os.getpid()})
