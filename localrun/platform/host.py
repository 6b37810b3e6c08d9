"""A local stand-in for the Functions host's Kafka trigger and its scale controller.

The Azure Functions host cannot be installed on these machines, so this reads the real binding from the app
(indexed as the worker indexes it, localrun/platform/indexing.py) and the real `host.json`, and drives the real
function:

- each instance is a process that imports the app (localrun/platform/instance.py), consuming in the trigger's group,
  handing each batch of at most `maxBatchSize` records over as host-shaped data through the azure-functions
  library's converter (localrun/platform/invocation.py), per-partition order kept;
- each batch runs through the extension's two retry loops (`@app.retry`, then `commitOnFailure` /
  `maxRetries`), its offsets stored after it and auto-committed every `autoCommitIntervalMs`, a subscriber
  thread consuming meanwhile into the extension's executor channel until it is full (localrun/platform/extension.py);
- a scale controller evaluates lag every interval, target-based by default or incremental
  (localrun/platform/scaler.py), and starts or stops instance processes to match: on Flex Consumption down to zero when
  the trigger has no lag, on Premium never below one. An instance it removes is drained and then killed
  (SIGKILL), as the host disposes of a Python worker (`InstanceLoop.run`);
- the app's timer functions fire on their NCRONTAB schedules (localrun/platform/timers.py): on Flex in a timer instance
  process of their own, whatever the trigger's instance count; on Premium in one of the trigger's instances.

An in-process function (tests, benchmarks) runs the same loop in threads instead.
"""

from __future__ import annotations

import collections
import importlib
import json
import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from localrun.platform.binding import TriggerBinding, invoke, load_binding, resolve
from localrun.platform.extension import KafkaHostOptions
from localrun.platform.instance import InstanceSpec, process_main, thread_main, timer_process_main
from localrun.platform.scaler import ScaleController, partition_lag
from localrun.platform.timers import Schedule, TimerBinding, load_timers
from settlement.core import settled_group

__all__ = [
    "HostStats",
    "KafkaHostOptions",
    "LocalHost",
    "TriggerBinding",
    "invoke",
    "load_binding",
    "local_settings",
    "resolve",
    "run_settings",
]

log = logging.getLogger("localrun.host")
LAG_CONSUMER_RENEW_S = 15.0  # a lag readout failing this long gets new consumers (see LocalHost.lag)
# How long the host waits for a draining instance before it kills the worker: the dispatcher's
# ProcessShutdownTimeout and the script host's stop wait are 10 s each (azure-functions-host 4.1037).
SCALE_IN_GRACE_S = 10.0
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class HostStats:
    """Counters the progress display, the summary and the fault tests read (aggregated over instances)."""

    batches: int = 0
    records: int = 0
    invocations: int = 0
    failures: int = 0
    skipped_records: int = 0
    store_failures: int = 0
    aborted_batches: int = 0
    dropped_records: int = 0  # in batches the extension never invoked (a traceparent it cannot parse, tracing on)
    killed: int = 0
    channel_wait_s: float = 0.0  # time batches waited for room in the executor channel (the extension's throttle)
    busy_s: float = 0.0  # time instances spent running batches (invocations, retries, storing offsets)
    pids: set[int] = field(default_factory=set)
    batch_log: list[tuple[str, list[tuple[int, int]]]] = field(default_factory=list)
    ranges: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, first, last) of every batch run
    timer_runs: int = 0
    timer_errors: list[str] = field(default_factory=list)
    repaired: int = 0  # records the repair timer settled
    drained: int = 0  # instances scaled in (drained, then killed)
    # (seconds since the host started, {partition: (records, seconds)}) per repair run: the lag it recorded
    lag_samples: list[tuple[float, dict[int, tuple[int, float]]]] = field(default_factory=list)
    # the repair runs, each {"instance", "started_at", "ended_at" (epoch s),
    # "run": {partition: (records, seconds, waiting, settled)}}
    repair_runs: list[dict[str, Any]] = field(default_factory=list)
    # what the instances exported (with `export_interval_ms`): `customMetrics` rows, each with its "instance"
    exported: list[dict[str, Any]] = field(default_factory=list)
    # trade-to-acknowledgement latency of the records of succeeded batches (accounting.latency_buckets)
    latency: collections.Counter[int] = field(default_factory=collections.Counter)
    started: float = field(default_factory=time.monotonic)

    def add(self, event: Mapping[str, Any]) -> None:
        kind = event.get("kind", "batch")
        if kind == "metrics":
            self.exported.extend({**row, "instance": event["instance"]} for row in event["rows"])
            return
        if kind == "timer":
            self.timer_runs += 1
            if event["error"]:
                self.timer_errors.append(event["error"])
            self.repaired += event.get("repaired", 0)
            if event.get("lag"):
                self.lag_samples.append((time.monotonic() - self.started, dict(event["lag"])))
            if event.get("run"):
                keys = ("instance", "started_at", "ended_at")
                self.repair_runs.append({**{k: event[k] for k in keys}, "run": dict(event["run"])})
            return
        if kind == "drained":
            self.drained += 1
            return
        self.batches += 1
        self.records += event["records"]
        self.invocations += event["invocations"]
        self.failures += event["invocations"] - (1 if event["succeeded"] else 0)
        self.skipped_records += event["records"] if event["skipped"] else 0
        dropped = event.get("dropped", False)
        self.dropped_records += event["records"] if dropped else 0
        self.store_failures += 0 if event["stored"] or event["aborted"] or dropped else 1
        self.ranges.extend(event["ranges"])
        self.latency.update(event.get("latency", {}))
        self.aborted_batches += 1 if event["aborted"] else 0
        self.channel_wait_s += event["channel_wait_s"]
        self.busy_s += event["busy_s"]
        self.pids.add(event["pid"])
        if event["coords"]:
            self.batch_log.append((event["instance"], [tuple(c) for c in event["coords"]]))


@dataclass
class _Running:
    name: str
    handle: Any  # a multiprocessing Process or a Thread
    stop: Any  # its stop event
    drain: Any = None  # its drain event (scale-in)
    timers: Any = None  # the queue of timer invocations it runs (Premium instances, the Flex timer instance)

    @property
    def pid(self) -> int | None:
        return getattr(self.handle, "pid", None)


class LocalHost:
    """Runs instances of the Kafka-triggered function and a scale controller."""

    def __init__(
        self,
        binding: TriggerBinding,
        options: KafkaHostOptions,
        partitions: int,
        consumer_conf: Mapping[str, Any] | None = None,
        evaluation_interval_s: float = 30.0,
        max_instances: int | None = None,
        retry_scale: float = 1.0,
        app: str | None = None,
        settings: Mapping[str, str] | None = None,
        scaling: str = "target",
        fault: str | None = None,
        trace: bool = False,
        scale_in_delay_s: float = 60.0,
        plan: str = "premium",
        timers: list[TimerBinding] | None = None,
        timer_instances: int = 1,
        export_interval_ms: int | None = None,
        tracing: bool = False,
    ) -> None:
        if binding.cardinality != "MANY" or binding.data_type != "BINARY":
            raise ValueError("the local host drives cardinality=MANY, dataType=binary triggers")
        self.binding = binding
        self.options = options
        self.partitions = partitions
        self.evaluation_interval_s = evaluation_interval_s
        self.controller = ScaleController(
            scaling, binding.lag_threshold, partitions, max_instances, scale_in_delay_s, plan=plan
        )
        self.plan = plan
        self.spec = InstanceSpec(
            name="",
            options=options,
            retry_scale=retry_scale,
            fault=fault,
            trace=trace,
            consumer_conf=dict(consumer_conf or {}),
            app=app,
            settings=dict(settings or {}),
            export_interval_ms=export_interval_ms,
            tracing=tracing,
        )
        self.stats = HostStats()
        self.instances: list[_Running] = []
        self.peak_instances = 0
        self.scale_events: list[tuple[float, int, int]] = []  # (seconds since start, instances, lag)
        self._ctx = multiprocessing.get_context("spawn")
        self._events: Any = self._ctx.Queue() if app else queue.Queue()
        self._started_instances = 0
        self.processes_started = 0  # instance and timer-instance processes (each signs in on its own)
        self._started = time.monotonic()
        self._lag_consumer, self._settled_consumer = self._lag_consumers()
        self._lag_unknown_since: float | None = None
        if timers is None:
            timers = self._app_timers(app, settings or {}) if app else []
        self.schedules = [Schedule(t) for t in timers]
        self._timer_in_flight: set[str] = set()
        # Flex: the timer functions' own instances; each run goes to the next, as the platform runs a timer on
        # whichever instance of the function it has (or wakes), not on one it keeps for it
        self.timer_instances: list[_Running | None] = [None] * timer_instances
        self._timer_turn = 0
        self._dead: set[int | None] = set()  # pids of instances whose own exit was reported

    @staticmethod
    def _app_timers(app: str, settings: Mapping[str, str]) -> list[TimerBinding]:
        module, _, attribute = app.partition(":")
        return load_timers(getattr(importlib.import_module(module), attribute), settings)

    def _lag_consumers(self) -> tuple[Consumer, Consumer]:
        # The scaler connects as the listener does (KafkaScalerProvider: the same mode and credentials).
        base = {"bootstrap.servers": self.binding.broker_list, "enable.auto.commit": False, **self.binding.auth}
        return (
            Consumer({**base, "group.id": self.binding.consumer_group}),
            Consumer({**base, "group.id": settled_group(self.binding.consumer_group)}),
        )

    def drained(self, exactly_once: bool) -> bool:
        """Every input is through: the group's lag is 0, and under exactly-once the ledger's too (a transaction
        lost after its batch returned is settled again by the process that lost it, or by the partition's
        next batch; the run must not end before)."""
        return self.lag() == 0 and (not exactly_once or self.lag(settled=True) == 0)

    # ---- instances ----------------------------------------------------------------------------------------

    def add_instance(self) -> bool:
        if len(self.instances) >= self.controller.cap:
            return False
        self._started_instances += 1
        spec = replace(self.spec, name=f"instance-{self._started_instances}")
        stop: Any
        drain: Any
        timers: Any = None
        if self.spec.app:
            stop, drain = self._ctx.Event(), self._ctx.Event()
            timers = self._ctx.Queue() if self.schedules and self.plan == "premium" else None
            handle: Any = self._ctx.Process(
                target=process_main, args=(spec, self._events, stop, drain, timers), name=spec.name
            )
        else:
            stop, drain = threading.Event(), threading.Event()
            handle = threading.Thread(
                target=thread_main, args=(spec, self.binding, self._events, stop, drain), name=spec.name, daemon=True
            )
        handle.start()
        self.processes_started += 1
        self.instances.append(_Running(spec.name, handle, stop, drain, timers))
        self.peak_instances = max(self.peak_instances, len(self.instances))
        return True

    def remove_instance(self) -> bool:
        """Scale in as the host does: the newest instance is drained (its listener stops, the batches it holds
        run, its consumer unsubscribes), then its worker process is killed (SIGKILL) within the host's grace."""
        if len(self.instances) <= self.controller.floor:
            return False
        running = self.instances.pop()
        running.drain.set()
        deadline = time.monotonic() + SCALE_IN_GRACE_S
        drained = self.stats.drained
        while self.stats.drained == drained and running.handle.is_alive() and time.monotonic() < deadline:
            self.poll_events()
            time.sleep(0.05)
        if self.spec.app and running.handle.is_alive():
            running.handle.kill()
            running.handle.join(timeout=10)
        else:
            running.stop.set()
            self._join([running], timeout_s=30)
        return True

    def kill_instance(self, index: int = 0) -> int | None:
        """A real process death (SIGKILL), mid-batch or not: nothing is closed, nothing more is committed."""
        if not self.spec.app:
            raise RuntimeError("only process instances can be killed")
        running = self.instances.pop(index)
        running.handle.kill()
        running.handle.join(timeout=10)
        self.stats.killed += 1
        return running.pid

    def start(self, instances: int = 1) -> None:
        self._started = time.monotonic()
        self.stats.started = self._started
        for _ in range(instances):
            self.add_instance()

    # ---- timers -------------------------------------------------------------------------------------------

    def fire_timers(self) -> None:
        """Fire each timer that is due and not running (a timer never overlaps itself) on the instance the plan
        runs it on; with none to run it (Premium, every instance gone) it waits and fires past due later."""
        now = datetime.now(UTC)
        for schedule in self.schedules:
            name = schedule.timer.function_name
            if name in self._timer_in_flight or not schedule.due(now):
                continue
            target = self._timer_target()
            if target is None:
                continue
            target.put((name, schedule.fired(now)))
            self._timer_in_flight.add(name)

    def _timer_target(self) -> Any:
        if not self.spec.app:
            return None
        if self.plan == "flex":
            turn = self._timer_turn % len(self.timer_instances)
            self._timer_turn += 1
            running = self.timer_instances[turn]
            if running is None or not running.handle.is_alive():
                stop, timers = self._ctx.Event(), self._ctx.Queue()
                name = "timer-instance" if len(self.timer_instances) == 1 else f"timer-instance-{turn + 1}"
                spec = replace(self.spec, name=name, fault=None)
                handle = self._ctx.Process(
                    target=timer_process_main, args=(spec, self._events, stop, timers), name=spec.name
                )
                handle.start()
                self.processes_started += 1
                running = self.timer_instances[turn] = _Running(spec.name, handle, stop, None, timers)
                self._timer_in_flight.clear()  # a dead one's run never reports
            return running.timers
        alive = [r for r in self.instances if r.timers is not None and r.handle.is_alive()]
        return alive[0].timers if alive else None

    def poll_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if event.get("kind") == "timer":
                self._timer_in_flight.discard(event["function"])
            self.stats.add(event)

    # ---- scaling ------------------------------------------------------------------------------------------

    def lag(self, settled: bool = False) -> int:
        """Records not yet committed by the group over all partitions, as the scale controller reads it;
        -1 while the broker cannot say (a restart, a coordinator move). With `settled`, the exactly-once
        ledger's lag instead: records whose settlement is not committed yet (`<group>.settled`)."""
        tps = [TopicPartition(self.binding.topic, p) for p in range(self.partitions)]
        try:
            consumer = self._settled_consumer if settled else self._lag_consumer
            committed = consumer.committed(tps, timeout=10)
            total = 0
            for tp in committed:
                low, high = self._lag_consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
                total += partition_lag(low, high, tp.offset)
        except KafkaException as exc:
            log.info("lag unknown for now: %s", exc)
            now = time.monotonic()
            self._lag_unknown_since = self._lag_unknown_since or now
            if now - self._lag_unknown_since > LAG_CONSUMER_RENEW_S:
                # On the 3-node cluster a consumer whose partition leader was killed kept timing out in
                # get_watermark_offsets long after the leader moved and the node came back (librdkafka's
                # watermark query is known to stick after a leader loss, e.g. librdkafka #2535): new ones ask afresh.
                log.warning("lag unknown for %.0f s (%s): new lag consumers", now - self._lag_unknown_since, exc)
                self._lag_consumer.close()
                self._settled_consumer.close()
                self._lag_consumer, self._settled_consumer = self._lag_consumers()
                self._lag_unknown_since = None
            return -1
        self._lag_unknown_since = None
        return total

    def evaluate_scale(self) -> int:
        """One scale-controller evaluation: start or stop instances to match its decision."""
        lag = self.lag()
        now = time.monotonic() - self._started
        wanted = self.controller.desired(lag, len(self.instances), now)
        while len(self.instances) < wanted and self.add_instance():
            log.info("scaled out to %d instances (lag %d)", len(self.instances), lag)
        while len(self.instances) > wanted and self.remove_instance():
            log.info("scaled in to %d instances (lag %d)", len(self.instances), lag)
        self.scale_events.append((now, len(self.instances), lag))
        return lag

    def run_until(
        self,
        done: Callable[[], bool],
        timeout_s: float,
        autoscale: bool = True,
        on_tick: Callable[[LocalHost], None] | None = None,
        tick_s: float = 1.0,
    ) -> bool:
        """Run until `done()` or the timeout; returns whether `done()` became true."""
        deadline = time.monotonic() + timeout_s
        next_eval = time.monotonic() + self.evaluation_interval_s
        while time.monotonic() < deadline:
            self.poll_events()
            if done():
                return True
            self._report_deaths()
            self.fire_timers()
            if autoscale and time.monotonic() >= next_eval:
                self.evaluate_scale()
                next_eval += self.evaluation_interval_s
            if on_tick is not None:
                on_tick(self)
            time.sleep(tick_s)
        self.poll_events()
        return done()

    def _processes(self) -> list[_Running]:
        """Every instance process running now: the trigger's and (Flex) the timer functions' own."""
        return self.instances + [r for r in self.timer_instances if r is not None]

    def _report_deaths(self) -> None:
        """Log, once each, an instance process that exited by itself (the host kills or stops only instances it
        took off `instances` first): a crash in native code (librdkafka's SIGSEGV) leaves no Python traceback, and
        without this the run only showed lag standing still."""
        for running in self._processes():
            code = getattr(running.handle, "exitcode", None)
            if code is not None and running.pid not in self._dead:
                self._dead.add(running.pid)
                cause = f" ({signal.Signals(-code).name})" if code < 0 and -code in signal.valid_signals() else ""
                log.error("%s (pid %s) exited by itself, exit code %s%s", running.name, running.pid, code, cause)

    def stop(self) -> None:
        """The harness's teardown (not a platform action): every instance closes gracefully."""
        stopping = self._processes()
        for running in stopping:
            running.stop.set()
        self._join(stopping, timeout_s=30)
        self._lag_consumer.close()
        self._settled_consumer.close()

    def _join(self, stopping: list[_Running], timeout_s: float) -> None:
        """Wait for stopping instances to exit, reading their reports meanwhile: a process does not exit while
        its queue still holds reports the pipe could not take (multiprocessing flushes it at exit), so joining
        without reading blocks until the timeout, and the reports die with the process that is then killed."""
        deadline = time.monotonic() + timeout_s
        for running in stopping:
            while running.handle.is_alive() and time.monotonic() < deadline:
                self.poll_events()
                running.handle.join(timeout=0.05)
            if self.spec.app and running.handle.is_alive():
                log.warning("%s did not stop within %.0f s; killed", running.name, timeout_s)
                running.handle.kill()
                running.handle.join(timeout=10)
        self.poll_events()


def local_settings(path: Path | None = None) -> dict[str, str]:
    """`Values` of local.settings.json (or the checked-in example when there is none)."""
    path = path or (ROOT / "local.settings.json")
    if not path.exists():
        path = ROOT / "local.settings.json.example"
    values = json.loads(path.read_text()).get("Values", {})
    return {k: str(v) for k, v in values.items()}


def run_settings(
    bootstrap: str, registry_url: str, source: str, settlements: str, dead_letter: str, group: str, **extra: str
) -> dict[str, str]:
    """The app settings of one local run: local.settings.json's values, pointed at this run's broker, registry,
    topics and consumer group (`extra` adds or overrides settings by name)."""
    settings = local_settings()
    settings.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SCHEMA_REGISTRY_URL": registry_url,
            "USER_TRADES_TOPIC": source,
            "SETTLEMENTS_TOPIC": settlements,
            "DEAD_LETTER_TOPIC": dead_letter,
            "KAFKA_CONSUMER_GROUP": group,
            **extra,
        }
    )
    return settings
