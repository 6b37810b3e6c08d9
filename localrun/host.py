"""A local stand-in for the Functions host's Kafka trigger, following the extension's documented semantics.

The Azure Functions host cannot be installed on these machines, so this reads the real binding from
`function_app.py` and the real `host.json`, and drives the real function:

- batches of at most `maxBatchSize` records (cardinality MANY), handed over as `func.KafkaEvent` lists
  with binary bodies, per-partition order kept (one consumer owns a partition; batches are in order);
- offsets are committed only after the function returns;
- on failure with `commitOnFailure: true` (the extension's default) the offsets are committed anyway — the
  batch is lost to the function; with `false` the same batch is retried up to `maxRetries` times, waiting
  with the exponential back-off of the function's `@app.retry` policy between attempts, then committed with
  the skipped range logged, as the extension does;
- several instances (consumers in one group) and a scale controller that adds at most one instance per
  evaluation interval while lag per instance exceeds `lagThreshold`, never more than the partition count.

Instances are threads in one process, so they share the static producer as one worker would; on Azure each
instance is its own process with its own producer.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger("localrun.host")
ROOT = Path(__file__).resolve().parent.parent
_SETTING = re.compile(r"^%([A-Za-z0-9_]+)%$")


@dataclass(frozen=True)
class TriggerBinding:
    function_name: str
    topic: str
    consumer_group: str
    broker_list: str
    cardinality: str
    data_type: str
    lag_threshold: int
    user_function: Callable[[list[func.KafkaEvent]], Any]
    retry_min_s: float = 0.1  # back-off between failed attempts, from the function's @app.retry policy
    retry_max_s: float = 2.0


@dataclass(frozen=True)
class KafkaHostOptions:
    """`extensions.kafka` of host.json, with the extension's defaults."""

    max_batch_size: int = 64
    subscriber_interval_s: float = 1.0
    auto_offset_reset: str = "earliest"
    commit_on_failure: bool = True
    max_retries: int = 5

    @classmethod
    def from_host_json(cls, path: Path = ROOT / "host.json") -> KafkaHostOptions:
        kafka = {k.lower(): v for k, v in json.loads(path.read_text()).get("extensions", {}).get("kafka", {}).items()}
        return cls(
            max_batch_size=int(kafka.get("maxbatchsize", 64)),
            subscriber_interval_s=float(kafka.get("subscriberintervalinseconds", 1)),
            auto_offset_reset=str(kafka.get("autooffsetreset", "Earliest")).lower(),
            commit_on_failure=bool(kafka.get("commitonfailure", True)),
            max_retries=int(kafka.get("maxretries", 5)),
        )


def resolve(value: str, settings: Mapping[str, str]) -> str:
    """Resolve a `%NAME%` binding expression the way the host does; a literal stays as it is."""
    match = _SETTING.match(value or "")
    if not match:
        return value
    name = match.group(1)
    if name not in settings or settings[name] == "":
        raise KeyError(f"binding expression %{name}% names an app setting that is not set")
    return settings[name]


_indexed: dict[int, list[Any]] = {}


def _timespan_s(value: str | None, default: float) -> float:
    """Seconds of a .NET TimeSpan string such as "00:01:30"."""
    if not value:
        return default
    hours, minutes, seconds = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _retry_policy(function: Any) -> dict[str, Any]:
    for setting in getattr(function, "_settings", []):
        rep = setting.get_dict_repr()
        if rep.get("setting_name") == "retry_policy":
            return dict(rep)
    return {}


def load_binding(app: Any, settings: Mapping[str, str]) -> TriggerBinding:
    """Read the Kafka trigger of a `func.FunctionApp` (as the host indexes it) and resolve its settings."""
    # Indexing builds the functions once; a FunctionApp refuses to be indexed twice.
    if id(app) not in _indexed:
        # The library warns on the root logger that auth levels only apply to HTTP functions: noise here.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            _indexed[id(app)] = app.get_functions()
        finally:
            root.setLevel(level)
    functions = _indexed[id(app)]
    for function in functions:
        for binding in json.loads(function.get_function_json())["bindings"]:
            if binding["type"] == "kafkaTrigger":
                retry = _retry_policy(function)
                return TriggerBinding(
                    function_name=function.get_function_name(),
                    topic=resolve(binding["topic"], settings),
                    consumer_group=resolve(binding.get("consumerGroup", "$Default"), settings),
                    broker_list=resolve(binding["brokerList"], settings),
                    cardinality=str(binding.get("cardinality", "ONE")).upper(),
                    data_type=str(binding.get("dataType", "STRING")).upper(),
                    lag_threshold=int(binding.get("lagThreshold", 1000)),
                    user_function=function.get_user_function(),
                    retry_min_s=_timespan_s(retry.get("minimum_interval") or retry.get("delay_interval"), 0.1),
                    retry_max_s=_timespan_s(retry.get("maximum_interval") or retry.get("delay_interval"), 2.0),
                )
    raise LookupError("the app has no Kafka-triggered function")


def to_event(msg: Message) -> func.KafkaEvent:
    """One record as the extension hands it to a binary, cardinality=MANY Python function."""
    _kind, ts = msg.timestamp()
    stamp = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    key = msg.key()
    return func.KafkaEvent(
        body=msg.value() or b"",
        key=key.decode("utf-8", errors="replace") if key is not None else None,
        offset=msg.offset(),
        partition=msg.partition(),
        topic=msg.topic(),
        timestamp=stamp,
        headers=[],
    )


@dataclass
class HostStats:
    """Counters the progress display and the fault tests read."""

    batches: int = 0
    records: int = 0
    failures: int = 0
    retries: int = 0
    skipped_records: int = 0
    commit_failures: int = 0
    skipped_ranges: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Instance(threading.Thread):
    """One function-app instance: a consumer in the group, calling the function batch by batch."""

    def __init__(
        self,
        name: str,
        binding: TriggerBinding,
        options: KafkaHostOptions,
        stats: HostStats,
        consumer_conf: Mapping[str, Any],
        retry_scale: float = 1.0,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.retry_scale = retry_scale
        self.binding = binding
        self.options = options
        self.stats = stats
        self._stop_event = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": binding.broker_list,
                "group.id": binding.consumer_group,
                "enable.auto.commit": False,
                "auto.offset.reset": options.auto_offset_reset,
                "partition.assignment.strategy": "cooperative-sticky",
                **consumer_conf,
            }
        )

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        self.consumer.subscribe([self.binding.topic])
        try:
            while not self._stop_event.is_set():
                msgs = self.consumer.consume(self.options.max_batch_size, timeout=self.options.subscriber_interval_s)
                batch = [m for m in msgs if not _is_error(m)]
                if batch:
                    self._deliver(batch)
        finally:
            self.consumer.close()

    def _deliver(self, batch: list[Message]) -> None:
        events = [to_event(m) for m in batch]
        attempts = 1 if self.options.commit_on_failure else 1 + self.options.max_retries
        for attempt in range(attempts):
            try:
                self.binding.user_function(events)
                break
            except Exception as exc:  # noqa: BLE001 - the host catches everything a function raises
                with self.stats.lock:
                    self.stats.failures += 1
                    self.stats.retries += 1 if attempt + 1 < attempts else 0
                log.warning(
                    "%s: function failed on a batch of %d (attempt %d/%d): %s",
                    self.name,
                    len(batch),
                    attempt + 1,
                    attempts,
                    exc,
                )
                if attempt + 1 < attempts:
                    backoff = min(self.binding.retry_max_s, self.binding.retry_min_s * 2**attempt)
                    time.sleep(backoff * self.retry_scale)
                    continue
                self._log_skipped(batch)
        try:
            self.consumer.commit(offsets=_next_offsets(batch), asynchronous=False)
        except KafkaException as exc:
            # A rebalance moved the partitions: the new owner re-reads from the last commit (at-least-once),
            # as the extension does. The instance keeps running.
            with self.stats.lock:
                self.stats.commit_failures += 1
            log.warning("%s: commit after a batch failed (%s); the batch will be redelivered", self.name, exc)
        with self.stats.lock:
            self.stats.batches += 1
            self.stats.records += len(batch)

    def _log_skipped(self, batch: list[Message]) -> None:
        ranges = []
        for tp in _next_offsets(batch):
            offsets = [int(m.offset() or 0) for m in batch if m.partition() == tp.partition]
            ranges.append(f"{tp.topic}[{tp.partition}] offsets {min(offsets)}..{max(offsets)}")
        with self.stats.lock:
            self.stats.skipped_records += len(batch)
            self.stats.skipped_ranges.extend(ranges)
        log.error("%s: committing past a failed batch; skipped %s", self.name, "; ".join(ranges))


def _is_error(msg: Message) -> bool:
    err = msg.error()
    if err is None:
        return False
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", err)
    return True


def _next_offsets(batch: list[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for m in batch:
        key = (str(m.topic()), int(m.partition() or 0))
        last[key] = max(last.get(key, -1), int(m.offset() or 0))
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


class LocalHost:
    """Runs instances of the Kafka-triggered function and, optionally, a scale controller."""

    def __init__(
        self,
        binding: TriggerBinding,
        options: KafkaHostOptions,
        partitions: int,
        consumer_conf: Mapping[str, Any] | None = None,
        evaluation_interval_s: float = 30.0,
        max_instances: int | None = None,
        retry_scale: float = 1.0,
    ) -> None:
        if binding.cardinality != "MANY" or binding.data_type != "BINARY":
            raise ValueError("the local host drives cardinality=MANY, dataType=binary triggers")
        self.binding = binding
        self.options = options
        self.partitions = partitions
        self.consumer_conf = dict(consumer_conf or {})
        self.evaluation_interval_s = evaluation_interval_s
        self.max_instances = min(partitions, max_instances or partitions)
        self.retry_scale = retry_scale
        self.stats = HostStats()
        self.instances: list[Instance] = []
        self.scale_events: list[tuple[float, int, int]] = []  # (seconds since start, instances, lag)
        self._started = time.monotonic()
        self._lag_consumer = Consumer(
            {"bootstrap.servers": binding.broker_list, "group.id": binding.consumer_group, "enable.auto.commit": False}
        )

    def add_instance(self) -> bool:
        if len(self.instances) >= self.max_instances:
            return False
        inst = Instance(
            f"instance-{len(self.instances) + 1}",
            self.binding,
            self.options,
            self.stats,
            self.consumer_conf,
            self.retry_scale,
        )
        self.instances.append(inst)
        inst.start()
        return True

    def start(self, instances: int = 1) -> None:
        self._started = time.monotonic()
        for _ in range(instances):
            self.add_instance()

    def lag(self) -> int:
        """Records not yet committed by the group, over all partitions (what the scale controller reads);
        -1 while the broker cannot say (a restart, a coordinator move)."""
        tps = [TopicPartition(self.binding.topic, p) for p in range(self.partitions)]
        try:
            committed = self._lag_consumer.committed(tps, timeout=10)
            total = 0
            for tp in committed:
                low, high = self._lag_consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
                start = tp.offset if tp.offset >= 0 else low
                total += max(0, high - start)
        except KafkaException as exc:
            log.info("lag unknown for now: %s", exc)
            return -1
        return total

    def evaluate_scale(self) -> int:
        """One scale-controller evaluation: add one instance if lag per instance exceeds the threshold."""
        lag = self.lag()
        overloaded = lag >= 0 and bool(self.instances) and lag / len(self.instances) > self.binding.lag_threshold
        if overloaded and self.add_instance():
            log.info("scaled out to %d instances (lag %d)", len(self.instances), lag)
        self.scale_events.append((time.monotonic() - self._started, len(self.instances), lag))
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
            if done():
                return True
            if autoscale and time.monotonic() >= next_eval:
                self.evaluate_scale()
                next_eval += self.evaluation_interval_s
            if on_tick is not None:
                on_tick(self)
            time.sleep(tick_s)
        return done()

    def stop(self) -> None:
        for inst in self.instances:
            inst.stop()
        for inst in self.instances:
            inst.join(timeout=30)
        self._lag_consumer.close()


def local_settings(path: Path | None = None) -> dict[str, str]:
    """`Values` of local.settings.json (or the checked-in example when there is none)."""
    path = path or (ROOT / "local.settings.json")
    if not path.exists():
        path = ROOT / "local.settings.json.example"
    values = json.loads(path.read_text()).get("Values", {})
    return {k: str(v) for k, v in values.items()}
