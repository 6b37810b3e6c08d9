"""The fault tables' one scenario module: a run of the real function through the emulated host while a fault
happens (`run_scenario`), what a read_committed reader then counts of every input (`Outcome`), and the liveness
rows, shared by the single-broker table (faults.py) and the cluster table (cluster_faults.py), which both import
it and never each other.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import IsolationLevel, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from localrun.experiments.accounting import coverage
from localrun.experiments.drain import Drain
from localrun.experiments.generator import GeneratorConfig, produce_trades
from localrun.experiments.kafka import (
    create_topics,
    high_watermarks,
    partition_ends,
    read_to_end,
    settlement_of,
    topic_partitions,
)
from localrun.experiments.probes import Measurements, Probes
from localrun.platform.host import KafkaHostOptions, LocalHost, load_binding, run_settings
from settlement.runtime import EXACTLY_ONCE, load_trigger_settings, transaction_timeout_ms

log = logging.getLogger("localrun.faults")

POISON_VALUES = (b"", b"{not protobuf}", b"\x00\x00", b"\x00\x7f\xff\xff\xf0\x00\x08\x01", b"\x00" * 9000)


@dataclass(frozen=True)
class Outcome:
    scenario: str
    guarantee: str  # SETTLEMENT_DELIVERY_GUARANTEE
    settings: str  # "ours" or "defaults"
    inputs: int
    settled: int
    dead_lettered: int
    duplicates: int
    lost: int
    invocations: int
    failed_invocations: int
    skipped_records: int
    store_failures: int
    finished: bool  # every input settled or dead-lettered before the time limit (False: a partition stalled)
    recovery_s: float | None = None  # cluster rows: from the fault until a batch more was written
    isr_s: float | None = None  # cluster rows that kill a node: from its restart until every ISR was full again
    visible_s: float | None = None  # liveness rows: from the fault until a read_committed reader saw every input
    stall_s: dict[str, float] | None = None  # per output topic: how long its read_committed readers were held back
    # with `export_interval_ms`: the `customMetrics` rows the instances exported, and the repair runs (Measurements)
    exported: tuple[dict[str, Any], ...] = ()
    repair_runs: tuple[dict[str, Any], ...] = ()
    dropped_records: int = 0  # in batches the extension never invoked (tracing on, a traceparent it refuses)

    @property
    def invariant_holds(self) -> bool:
        """No loss; and under exactly-once, no duplicate either (seen by a read_committed reader)."""
        exact = self.duplicates == 0 or self.guarantee != EXACTLY_ONCE
        return exact and self.lost == 0 and self.settled + self.dead_lettered - self.duplicates == self.inputs


@dataclass
class Run:
    """What a fault action can touch while the scenario runs."""

    host: LocalHost
    drain: Drain  # whether the run is through (drain.py)
    measurements: Measurements  # what the probes measured in the instances (probes.py)
    bootstrap: str
    settlements: str
    dead_letter: str
    inputs: int
    source: str = ""
    group: str = ""
    recovery_s: float | None = None  # set by a cluster fault: see localrun/experiments/cluster_faults.py
    isr_s: float | None = None
    not_drained: str = ""  # why the run did not drain in time, when it did not
    tail: Callable[[], None] | None = None  # liveness rows: produces the last trades, after a quiet spell
    registry_url: str = ""  # the harness's registry, for a fault that writes trades of its own
    fault_at: float | None = None  # liveness rows: when the fault struck (monotonic)
    visible_at: float | None = None  # ... and when a read_committed reader first saw every input
    stall_s: dict[str, float] | None = None
    _next_look: float = 0.0

    def all_visible(self) -> bool:
        """Whether a read_committed reader of both output topics sees every input now (read at most twice a
        second); the first time it does after the fault is recorded."""
        if self.visible_at is not None:
            return True
        if self.fault_at is None or time.monotonic() < self._next_look:
            return self.fault_at is None
        self._next_look = time.monotonic() + 0.5
        counted = coverage(
            self.inputs,
            [settlement_of(m) for m in read_to_end(self.bootstrap, self.settlements)],
            read_to_end(self.bootstrap, self.dead_letter),
        )
        if counted.lost == 0:
            self.visible_at = time.monotonic()
        return self.visible_at is not None

    @property
    def visible_s(self) -> float | None:
        if self.fault_at is None or self.visible_at is None:
            return None
        return round(self.visible_at - self.fault_at, 1)

    def outputs(self) -> int:
        """Records written so far; -1 while the broker cannot say (a topic just created has no leader yet)."""
        try:
            return high_watermarks(self.bootstrap, self.settlements) + high_watermarks(self.bootstrap, self.dead_letter)
        except KafkaException:
            return -1


Fault = Callable[[Run], None]


def wait_for_progress(run: Run, share: float, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while run.outputs() < run.inputs * share and time.monotonic() < deadline:
        time.sleep(0.05)


# ---- liveness rows: the fault strikes after the last batch returned, and no further trade arrives ----------


def _lag_zero(run: Run, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while run.host.lag() != 0 and time.monotonic() < deadline:
        time.sleep(0.02)


def _once_quiet(run: Run) -> None:
    """The last trades arrive after a quiet spell, so that one transaction holds just them: wait until the
    bulk is through and its transactions committed (the commit interval, 5 s in these rows), produce the tail,
    and wait until the host committed past it (lag 0). From here on nothing delivers a record again, and the
    tail sits in an open transaction for the commit interval."""
    _lag_zero(run)
    time.sleep(float(OPEN_LONGER["SETTLEMENT_COMMIT_INTERVAL_MS"]) / 1000 + 1)
    assert run.tail is not None, "a liveness row produces its tail after the bulk"
    run.tail()
    time.sleep(0.5)  # the tail is in the topic: the host's lag is no longer 0
    _lag_zero(run)
    log.info("%s: the tail is through", run.source)


def kill_after_last_batch(run: Run) -> None:
    """SIGKILL the instance the moment the trigger's lag reaches 0: its last transaction is open (the commit
    interval), the host has committed past it, and the partition stays quiet."""
    _once_quiet(run)
    run.host.kill_instance(0)
    run.fault_at = time.monotonic()


def freeze_after_last_batch(seconds: float) -> Fault:
    """SIGSTOP the instance once quiet for `seconds` (past the transaction timeout), then thaw it: its commit is
    refused (the coordinator aborted it, or the repair fenced it) though no instance took its partitions."""

    def fault(run: Run) -> None:
        _once_quiet(run)
        pid = run.host.instances[0].pid
        assert pid is not None, "freezing needs process instances"
        os.kill(pid, signal.SIGSTOP)
        run.fault_at = time.monotonic()
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(3)  # the thawed instance's committer meets its fenced producer

    return fault


def scale_to_zero(run: Run) -> None:
    """Flex: the scaler drains the last instance (and kills its worker) once the trigger's lag is 0."""
    _once_quiet(run)
    deadline = time.monotonic() + 90
    while run.host.instances and time.monotonic() < deadline:
        time.sleep(0.05)
    run.fault_at = time.monotonic()


# Values .NET's ActivityContext.TryParse refuses (localrun/platform/extension.py `invalid_traceparent`), as a
# producer with a broken or foreign tracer writes them: upper-case hex, all-zero ids, version ff, the wrong length.
MALFORMED_TRACEPARENTS = (
    b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    b"1-2-3",
)


def malformed_traceparents(run: Run) -> None:
    """Once a third is through, trades whose `traceparent` header .NET cannot parse arrive on every partition, then
    the tail, then one more such trade on every partition. With tracing on, each batch holding one is never invoked:
    a later batch's stored offset moves the trigger's commit past the first ones (settlement lag: repaired), and
    nothing comes after the last ones (the trigger's consumer moved on, its group's offset stays before them: the
    records wait, drained). Nothing delivers any of those records again: only the ledger's repair books them."""
    wait_for_progress(run, 1 / 3)
    partitions = run.host.partitions
    _produce_malformed(run, len(MALFORMED_TRACEPARENTS) * partitions, seed=13)
    assert run.tail is not None, "the row produces its tail after the malformed trades"
    run.tail()
    _produce_malformed(run, partitions, seed=14)  # each partition's last batch holds one
    run.fault_at = time.monotonic()


def _produce_malformed(run: Run, count: int, seed: int) -> None:
    """`count` trades with traceparents .NET refuses, spread over every partition in turn."""
    from localrun.experiments.generator import GeneratorConfig, trades, value_encoder

    encode = value_encoder(run.registry_url, run.source)
    producer = Producer({"bootstrap.servers": run.bootstrap, "enable.idempotence": True})
    partitions = run.host.partitions
    for i, (key, trade) in enumerate(trades(count, GeneratorConfig(seed=seed))):
        header = MALFORMED_TRACEPARENTS[i % len(MALFORMED_TRACEPARENTS)]
        producer.produce(
            run.source, key=key, value=encode(trade), headers=[("traceparent", header)], partition=i % partitions
        )
    assert producer.flush(30) == 0, "the trades with malformed traceparents were not all written"
    run.inputs += count


def kill_one_of_two_mid_stream(run: Run) -> None:
    """Two instances; once a third is through, SIGKILL the first mid-batch while trades keep arriving on every
    partition: its open transaction holds back the output partitions it wrote. Measures, per output topic,
    how long read_committed readers stood at what was written before the kill."""
    wait_for_progress(run, 1 / 3)
    time.sleep(0.3)
    marks = output_ends(run)
    run.host.kill_instance(0)
    run.fault_at = time.monotonic()
    run.stall_s = stalls_after(run, marks)


def output_ends(run: Run) -> dict[TopicPartition, int]:
    """Each output partition's end (high watermark) now."""
    admin = AdminClient({"bootstrap.servers": run.bootstrap})
    return partition_ends(
        admin, topic_partitions(admin, (run.settlements, run.dead_letter)), IsolationLevel.READ_UNCOMMITTED
    )


def stalls_after(run: Run, marks: dict[TopicPartition, int], timeout_s: float = 120.0) -> dict[str, float]:
    """Seconds until each output topic's last stable offset passed what was written at the mark: how long a
    read_committed reader of it saw nothing of what was written before (the longest of its partitions)."""
    admin = AdminClient({"bootstrap.servers": run.bootstrap})
    started = time.monotonic()
    pending = {tp: end for tp, end in marks.items() if end > 0}
    stalled: dict[str, float] = {run.settlements: 0.0, run.dead_letter: 0.0}
    while pending and time.monotonic() - started < timeout_s:
        stable = partition_ends(admin, list(pending), IsolationLevel.READ_COMMITTED)
        for tp, offset in stable.items():
            if offset >= pending[tp]:
                stalled[tp.topic] = max(stalled[tp.topic], round(time.monotonic() - started, 1))
                del pending[tp]
        time.sleep(0.2)
    for tp in pending:
        stalled[tp.topic] = math.inf
    return {("settlements" if t == run.settlements else "dead letters"): v for t, v in stalled.items()}


# The ledger's transaction timeout in these rows (SETTLEMENT_DELIVERY_TIMEOUT_SECONDS 15, OPEN_LONGER): its floor.
TXN_TIMEOUT_S = transaction_timeout_ms(15, 5.0) // 1000
# The liveness rows keep a partition's transaction open 5 s (instead of 0.3) so that the fault always meets one.
OPEN_LONGER = {"SETTLEMENT_COMMIT_INTERVAL_MS": "5000"}
LIVENESS: dict[str, dict[str, Any]] = {
    "killed right after its last batch returned, then quiet": {
        "fault": kill_after_last_batch,
        "settings": OPEN_LONGER,
        "plan": "flex",
        "tail": 30,
    },
    "frozen past the transaction timeout, then quiet, then thawed": {
        "fault": freeze_after_last_batch(TXN_TIMEOUT_S + 10),
        "settings": OPEN_LONGER,
        "plan": "flex",
        "consumer_conf": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
        "autoscale": False,
        "tail": 30,
        "timeout_s": 180.0,
    },
    "a live instance stalled past the transaction timeout (inside its session), then quiet": {
        "fault": freeze_after_last_batch(TXN_TIMEOUT_S + 10),
        "settings": OPEN_LONGER,
        "plan": "flex",
        "consumer_conf": {"session.timeout.ms": 120000, "heartbeat.interval.ms": 3000},
        "max_poll_interval_ms": 180000,
        "autoscale": False,
        "tail": 30,
        "timeout_s": 180.0,
    },
    "Flex scales to zero with transactions open": {
        "fault": scale_to_zero,
        "settings": OPEN_LONGER,
        "plan": "flex",
        "autoscale": True,
        "tail": 30,
    },
    "a gap over 5,000 records whose process dies": {
        "fault": kill_after_last_batch,
        "settings": OPEN_LONGER,
        "plan": "flex",
        "records": 6600,
        "tail": 6000,  # in one transaction: batches of 256 settle it within the commit interval
        "max_batch_size": 256,
    },
    "records with a traceparent .NET refuses, tracing on: batches never invoked, committed past or left waiting": {
        "fault": malformed_traceparents,
        "plan": "flex",
        "tracing": True,
        "tail": 150,
    },
    "one of two instances killed mid-transaction while trades keep flowing": {
        "fault": kill_one_of_two_mid_stream,
        "settings": OPEN_LONGER,
        "plan": "flex",
        "instances": 2,
        "rate": 200.0,
        "poison": True,
        "settlement_partitions": 3,
    },
}
VISIBLE_BOUND_S = 60.0  # every liveness row: every input visible to a read_committed reader within this


DEFAULTS = KafkaHostOptions()  # the extension's own defaults


def run_scenario(
    name: str,
    bootstrap: str,
    registry_url: str,
    ours: bool = True,
    guarantee: str = EXACTLY_ONCE,
    records: int = 600,
    partitions: int = 3,
    fault: Fault | None = None,
    function_fault: str | None = None,
    poison: bool = False,
    oversize: bool = False,
    max_poll_interval_ms: int | None = None,
    consumer_conf: dict[str, Any] | None = None,
    timeout_s: float = 120.0,
    replication: int = 1,
    settlement_partitions: int = 1,
    control_bootstrap: str | None = None,
    control_registry_url: str | None = None,
    retry_scale: float = 0.01,
    settings: dict[str, str] | None = None,
    plan: str = "premium",
    autoscale: bool = False,
    instances: int = 1,
    rate: float | None = None,
    tail: int = 0,
    max_batch_size: int = 50,
    max_retries: int | None = None,
    export_interval_ms: int | None = None,
    timer_instances: int = 1,
    tracing: bool = False,
) -> Outcome:
    """Stream `records` trades (plus poison records if asked) through the function while `fault` runs.

    On the 3-node cluster the function gets the proxied `bootstrap` and `registry_url`, while the harness
    (topics, the generator, progress, the final count) uses the unproxied `control_*` addresses: a network
    fault is then the function's alone, and the count never depends on the fault being over."""
    control = _Control(control_bootstrap or bootstrap, control_registry_url or registry_url)
    topics = _create_topics(control.bootstrap, partitions, settlement_partitions, replication)
    app_settings = _app_settings(bootstrap, registry_url, topics, guarantee, settings, export_interval_ms)
    with _indexed(app_settings) as function_app:
        inputs, generator = _produce_inputs(control, topics.source, records, tail, rate)
        inputs += _produce_bad_records(control.bootstrap, topics.source, partitions, poison, oversize)
        measurements = Measurements()
        host = LocalHost(
            load_binding(function_app.app, app_settings),
            _options(ours, max_batch_size, max_poll_interval_ms, max_retries),
            partitions,
            consumer_conf=consumer_conf,
            retry_scale=retry_scale,
            app="function_app:app",  # each instance a process importing the app, as on Azure
            settings=app_settings,
            plan=plan,
            evaluation_interval_s=2.0,
            timer_instances=timer_instances,
            tracing=tracing,
            hooks=Probes(function_fault, export_interval_ms),  # the row's function fault, the figures it reads
            observers=[measurements],
        )
        run = Run(
            host,
            Drain(host, guarantee == EXACTLY_ONCE),
            measurements,
            control.bootstrap,
            topics.settlements,
            topics.dead_letter,
            inputs,
            topics.source,
            topics.group,
            tail=_tail_producer(control, topics.source, tail) if tail else None,
            registry_url=control.registry_url,
        )
        finished = _run_through(name, run, fault, generator, instances, timeout_s, autoscale)
    return _count(name, guarantee, run, "ours" if ours else "defaults", finished)


@dataclass(frozen=True)
class _Control:
    """Where the harness creates topics, writes trades and counts: the unproxied addresses on the cluster."""

    bootstrap: str
    registry_url: str


@dataclass(frozen=True)
class _Topics:
    source: str
    settlements: str
    dead_letter: str
    group: str


def _create_topics(bootstrap: str, partitions: int, settlement_partitions: int, replication: int) -> _Topics:
    """The run's own topics and consumer group, created; on the cluster with min.insync.replicas 2."""
    run_id = uuid.uuid4().hex[:8]
    topics = _Topics(f"faults-in-{run_id}", f"faults-out-{run_id}", f"faults-dlq-{run_id}", f"faults-{run_id}")
    isr = {"min.insync.replicas": "2"} if replication >= 3 else {}
    # Confluent Cloud topics take records of 2 MB and more; ours too, so oversize records can arrive.
    create_topics(bootstrap, {topics.source: partitions}, {"max.message.bytes": "4000000", **isr}, replication)
    create_topics(bootstrap, {topics.settlements: settlement_partitions, topics.dead_letter: 1}, isr, replication)
    return topics


def _app_settings(
    bootstrap: str,
    registry_url: str,
    topics: _Topics,
    guarantee: str,
    settings: dict[str, str] | None,
    export_interval_ms: int | None,
) -> dict[str, str]:
    """The function's app settings in the row: its topics and group, a 15 s delivery timeout, a registry client
    that gives up at once; with `export_interval_ms`, the Azure Monitor distro's export interval too."""
    exporting = {} if export_interval_ms is None else {"OTEL_METRIC_EXPORT_INTERVAL": str(export_interval_ms)}
    return run_settings(
        bootstrap,
        registry_url,
        topics.source,
        topics.settlements,
        topics.dead_letter,
        topics.group,
        SETTLEMENT_DELIVERY_TIMEOUT_SECONDS="15",
        SETTLEMENT_DELIVERY_GUARANTEE=guarantee,
        SCHEMA_REGISTRY_CONFIG='{"timeout": 1, "max.retries": 0}',
        **exporting,
        **(settings or {}),
    )


@contextlib.contextmanager
def _indexed(app_settings: dict[str, str]) -> Iterator[Any]:
    """The function app indexed under the row's settings in this process, as the worker would index it; the
    process's environment (and the app's index) as they were afterwards."""
    import function_app

    saved_environ = dict(os.environ)
    os.environ.update(app_settings)  # the function imported here reads them, as on Azure; restored at the end
    os.environ["SETTLEMENT_WARM_START"] = "false"  # this process only indexes the app: no clients of its own
    # The app reads its trigger settings (the repair's schedule among them) when it is indexed: a run whose
    # settings change them indexes it again, as the worker would under those app settings, and again at the end.
    reindexed = load_trigger_settings(os.environ) != function_app.trigger
    if reindexed:
        importlib.reload(function_app)
    try:
        yield function_app
    finally:
        os.environ.clear()
        os.environ.update({**saved_environ, "SETTLEMENT_WARM_START": "false"})  # indexed only: no clients built
        if reindexed:
            importlib.reload(function_app)
        os.environ.clear()
        os.environ.update(saved_environ)


def _produce_inputs(
    control: _Control, source: str, records: int, tail: int, rate: float | None
) -> tuple[int, threading.Thread | None]:
    """The row's trades but its tail, written now; or, at a `rate`, by a generator running beside the host (its
    thread returned). Returns how many inputs the row counts (the tail included, written later)."""
    if rate is None:
        written = produce_trades(
            control.bootstrap, control.registry_url, source, records - tail, GeneratorConfig(seed=11)
        )
        return tail + written, None

    def generate() -> None:
        produce_trades(control.bootstrap, control.registry_url, source, records, GeneratorConfig(seed=11), rate=rate)

    generator = threading.Thread(target=generate, daemon=True)
    generator.start()
    return records, generator


def _produce_bad_records(bootstrap: str, source: str, partitions: int, poison: bool, oversize: bool) -> int:
    """Poison records (every kind, three times) and oversize ones, as the row asks; returns how many."""
    written = 0
    if poison:
        raw = Producer({"bootstrap.servers": bootstrap})
        for i, value in enumerate(POISON_VALUES * 3):
            raw.produce(source, key=f"User_{i}", value=value, partition=i % partitions)
        raw.flush(30)
        written += len(POISON_VALUES) * 3
    if oversize:
        # A 1.5 MB value and a 1 MB key: too large to write whole as a settlement or dead letter.
        big = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4_000_000})
        framed = b"\x00\x00\x00\x00\x01\x00"
        for i in range(partitions):
            big.produce(source, key=f"User_{i}", value=framed + b"\x01" * 1_500_000, partition=i)
            big.produce(source, key=b"U" * 1_000_000, value=framed, partition=i)
        big.flush(30)
        written += 2 * partitions
    return written


def _options(
    ours: bool, max_batch_size: int, max_poll_interval_ms: int | None, max_retries: int | None
) -> KafkaHostOptions:
    """host.json's Kafka options (ours, or the extension's defaults) with the row's batch size, poll bound and
    retries."""
    base = KafkaHostOptions.from_host_json() if ours else DEFAULTS
    return replace(
        base,
        max_batch_size=max_batch_size,
        max_poll_interval_ms=max_poll_interval_ms or base.max_poll_interval_ms,
        max_retries=base.max_retries if max_retries is None else max_retries,
    )


def _tail_producer(control: _Control, source: str, tail: int) -> Callable[[], None]:
    """What a liveness row's fault calls to write the last `tail` trades, after a quiet spell."""

    def produce_tail() -> None:
        if produce_trades(control.bootstrap, control.registry_url, source, tail, GeneratorConfig(seed=12)) != tail:
            log.error("the tail of %d trades was not produced whole", tail)

    return produce_tail


def _run_through(
    name: str,
    run: Run,
    fault: Fault | None,
    generator: threading.Thread | None,
    instances: int,
    timeout_s: float,
    autoscale: bool,
) -> bool:
    """Start the host and the fault beside it, run until every input is through (or the time is up), stop
    both; returns whether every input was through."""
    fault_thread = threading.Thread(target=fault, args=(run,), daemon=True) if fault else None
    run.host.start(instances)
    run.measurements.started = run.host.started
    if fault_thread:
        fault_thread.start()

    def through() -> bool:
        return (
            run.all_visible()  # first: it records when every input became visible
            and (generator is None or not generator.is_alive())
            and run.drain.done()
            and (fault_thread is None or not fault_thread.is_alive())
        )

    try:
        finished = run.host.run_until(through, timeout_s, autoscale=autoscale, tick_s=0.2)
        if not finished:
            _explain_not_drained(name, run, timeout_s, fault_thread)
    finally:
        run.host.stop()
        if fault_thread:
            fault_thread.join(timeout=60)
        run.drain.close()
    return finished


def _explain_not_drained(name: str, run: Run, timeout_s: float, fault_thread: threading.Thread | None) -> None:
    """Why the run did not drain: the trigger group's lag, the ledger's, and whether the fault still runs."""
    alive = fault_thread is not None and fault_thread.is_alive()
    lags = (run.host.lag(), run.drain.ledger_lag())
    log.warning("%s: not drained at %.0f s: group lag %s, ledger lag %s, fault running %s",
                name, timeout_s, *lags, alive)  # fmt: skip
    run.not_drained = f"lag {lags[0]}, ledger lag {lags[1]}, fault running {alive}"


def _count(name: str, guarantee: str, run: Run, settings: str, finished: bool) -> Outcome:
    """What a read_committed reader of both output topics sees, matched to the inputs by source coordinates."""
    settled_msgs = read_to_end(run.bootstrap, run.settlements)
    dead_msgs = read_to_end(run.bootstrap, run.dead_letter)
    counted = coverage(run.inputs, [settlement_of(m) for m in settled_msgs], dead_msgs)
    stats = run.host.stats
    return Outcome(
        name,
        guarantee,
        settings,
        run.inputs,
        counted.settled,
        counted.dead_lettered,
        counted.duplicates,
        counted.lost,
        stats.invocations,
        stats.failures,
        stats.skipped_records,
        stats.store_failures,
        finished,
        run.recovery_s,
        run.isr_s,
        run.visible_s,
        run.stall_s,
        tuple(run.measurements.exported),
        tuple(run.measurements.repair_runs),
        stats.dropped_records,
    )


LIVENESS_HEADER = (
    f"{'liveness row':<88}{'guarantee':>14}{'inputs':>7}{'settled':>8}{'dead':>5}{'dup':>5}{'lost':>5}"
    f"{'visible s':>10}  downstream stall s"
)


def liveness_line(o: Outcome) -> str:
    visible = "-" if o.visible_s is None else f"{o.visible_s:.1f}"
    stall = ", ".join(f"{k} {v:.1f}" for k, v in (o.stall_s or {}).items()) or "-"
    return (
        f"{o.scenario:<88}{o.guarantee:>14}{o.inputs:>7}{o.settled:>8}{o.dead_lettered:>5}{o.duplicates:>5}"
        f"{o.lost:>5}{visible:>10}  {stall}"
    )


# Rows where, at least once, the extension itself gives records up and nothing brings them back (no ledger, no
# repair): the table shows the loss, exactly-once must book them all.
LOST_WITHOUT_THE_LEDGER = {
    "records with a traceparent .NET refuses, tracing on: batches never invoked, committed past or left waiting"
}


def liveness_met(o: Outcome) -> bool:
    """A liveness row holds when nothing is lost or doubled and every input was visible within the bound (at least
    once, a row whose records the extension gives up shows the loss instead)."""
    if o.guarantee != EXACTLY_ONCE and o.scenario in LOST_WITHOUT_THE_LEDGER:
        return o.duplicates == 0 and o.lost == o.dropped_records > 0
    return o.invariant_holds and o.finished and o.visible_s is not None and o.visible_s <= VISIBLE_BOUND_S


def run_liveness(name: str, bootstrap: str, registry_url: str, guarantee: str, **extra: Any) -> Outcome:
    """One liveness row (our host.json), `extra` passed on (the cluster table's addresses and replication)."""
    row = {**LIVENESS[name], **extra}
    return run_scenario(name, bootstrap, registry_url, True, guarantee, **row)


def liveness_table(bootstrap: str, registry_url: str, guarantees: tuple[str, ...], only: str | None) -> int:
    """The liveness rows on one broker; returns how many missed."""
    print(LIVENESS_HEADER, flush=True)
    missed = 0
    for name in LIVENESS:
        if only and only not in name:
            continue
        for guarantee in guarantees:
            o = run_liveness(name, bootstrap, registry_url, guarantee)
            ok = liveness_met(o)
            missed += 0 if ok else 1
            print(liveness_line(o) + ("" if ok else "  <- MISSED"), flush=True)
    return missed
