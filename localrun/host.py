"""A local stand-in for the Functions host's Kafka trigger, following the extension's documented semantics.

The Azure Functions host cannot be installed on these machines, so this reads the real binding from
`function_app.py` and the real `host.json`, and drives the real function:

- the app is indexed as the worker indexes it (`localrun/indexing.py`), and each batch of at most
  `maxBatchSize` records reaches the function as host-shaped data converted by the azure-functions
  library's own converter (`localrun/invocation.py`); per-partition order kept;
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
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from localrun.indexing import index_app
from localrun.invocation import messages_to_events

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
    user_function: Callable[..., Any]
    param_name: str = "events"
    annotation: Any = None  # the parameter's annotation, checked by the converter on every call
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


def load_binding(app: Any, settings: Mapping[str, str]) -> TriggerBinding:
    """Index the app as the worker does (refusing what it refuses), then read the Kafka trigger's binding
    JSON as the host does and resolve its `%settings%`."""
    for function in index_app(app):
        binding = function.binding("kafkaTrigger")
        if binding is None:
            continue
        retry = function.retry
        return TriggerBinding(
            function_name=function.name,
            topic=resolve(binding["topic"], settings),
            consumer_group=resolve(binding.get("consumerGroup", "$Default"), settings),
            broker_list=resolve(binding["brokerList"], settings),
            cardinality=str(binding.get("cardinality", "ONE")).upper(),
            data_type=str(binding.get("dataType", "STRING")).upper(),
            lag_threshold=int(binding.get("lagThreshold", 1000)),
            user_function=function.user_function,
            param_name=binding["name"],
            annotation=function.inputs[binding["name"]].annotation,
            retry_min_s=retry.minimum_interval_s if retry else 0.1,
            retry_max_s=retry.maximum_interval_s if retry else 2.0,
        )
    raise LookupError("the app has no Kafka-triggered function")


def invoke(binding: TriggerBinding, batch: list[Message]) -> Any:
    """Call the function with the batch as the host + worker deliver it (see localrun/invocation.py)."""
    events = messages_to_events(batch, binding.annotation)
    return binding.user_function(**{binding.param_name: events})


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
        attempts = 1 if self.options.commit_on_failure else 1 + self.options.max_retries
        for attempt in range(attempts):
            try:
                invoke(self.binding, batch)
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
