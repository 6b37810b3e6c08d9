"""Benchmarks: figures and ratios against a baseline measured in the same run on the same broker.

    python bench/bench.py [throughput|coldstart|latency|rss|scaleout|firstbatch|channel|batchsize|guarantee|
                           decode|repair|auth|all]

(a) throughput: settle (decode → rules → encode → produce → wait for acks → commit) against a raw
    confluent-kafka consume → produce → wait → commit passthrough, at MaxBatchSize 1, 64 and 500; beside
    it the full invocation path (host-shaped data → the library's converter → the function);
(b) coldstart: importing function_app against importing only its dependencies, fresh interpreters;
(c) latency: end-to-end p50/p99 at a fixed rate through the local Kafka-trigger host, against the
    passthrough driven the same way;
(d) rss: resident memory while settling 1M records through the processor;
(e) scaleout: the main job's host with 1, 2 and 4 instance processes on 4 partitions;
(f) firstbatch: a fresh process's first batch acknowledged against a warm batch of the same size;
(g) channel: one instance under the extension's executor-channel defaults against host.json's settings;
(h) batchsize: host.json's maxBatchSize against the extension's default 64, throughput with 1 and 2 instance
    processes and latency at 500 rec/s;
(i) guarantee: exactly-once against at-least-once, instance processes at host.json's settings, latency as a
    read_committed reader sees it, and one process holding 100 partitions. Its last line is the ratio.
(j) decode: the per-record cost of reading a value by column name, for a writer laid out as ours (the one-call
    fast path), one whose columns moved (a compiled view) and one with a widened column (a view and a range
    check), against the fast path; no broker (a mock:// registry).
(l) pythons: the main job's host with one instance process, exactly-once, on each tested Python (scripts/pythons.sh:
    .venv for the deploy default, cached envs for the others), the versions taken in turn, against the first
    version; each run in an interpreter of its own (`bench.py host-rate` in that version's env).
(m) auth: our clients on the managed identity's tokens and the trigger on OIDC client credentials (the broker's
    OAUTHBEARER listener verifying each token, the registry requiring one; tokens living 60 s) against API keys
    on the plain listener, one instance process each under exactly-once, in turn. Its last line is the ratio.
(a)-(h) run at-least-once (their baselines were set against it); (i) runs both.
Not tests: they print, they assert nothing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from devstack import stack  # noqa: E402
from localrun.experiments.generator import GeneratorConfig, produce_trades, trades, value_encoder  # noqa: E402
from localrun.experiments.kafka import create_topics, high_watermarks, read_all, read_to_end, settlement_of  # noqa: E402
from localrun.experiments.main import percentile  # noqa: E402
from localrun.platform.host import KafkaHostOptions, LocalHost, TriggerBinding, load_binding, run_settings  # noqa: E402
from localrun.platform.indexing import kafka_annotation  # noqa: E402
from localrun.platform.instance import coordinates, next_offsets  # noqa: E402
from localrun.platform.invocation import HostRecord, convert, trigger_input  # noqa: E402
from localrun.platform.timers import load_timers  # noqa: E402
from settlement.core import InputRecord, stall_after_s  # noqa: E402
from settlement.runtime import (  # noqa: E402
    AT_LEAST_ONCE,
    EXACTLY_ONCE,
    GUARANTEES,
    Services,
    from_kafka_event,
    load_settings,
)


def topics(bootstrap: str, *names: str, partitions: int = 1) -> None:
    create_topics(bootstrap, dict.fromkeys(names, partitions))


def services_for(bootstrap: str, registry: str, out: str, dlq: str, guarantee: str = AT_LEAST_ONCE) -> Services:
    """Services of their own (a processor, its producer). At-least-once unless asked: the figures of (a)-(h) were set
    against it, and (i) compares the two."""
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SCHEMA_REGISTRY_URL": registry,
            "SETTLEMENTS_TOPIC": out,
            "DEAD_LETTER_TOPIC": dlq,
            "KAFKA_CONSUMER_GROUP": f"bench-{uuid.uuid4().hex[:8]}",
            "SETTLEMENT_DELIVERY_GUARANTEE": guarantee,
        }
    )
    return Services.build(settings)


def passthrough_function(bootstrap: str, out: str) -> Callable[[list[Any]], None]:
    """The baseline: what any consume → produce function must do, with the same durability settings.
    Takes consumed messages; each output names its source in a header (for the latency bench)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 5,
        }
    )

    def function(msgs: list[Any]) -> None:
        for m in msgs:
            producer.produce(out, key=m.key(), value=m.value(), headers=[("src", f"{m.partition()}:{m.offset()}")])
        producer.flush(30)

    return function


def drive(
    bootstrap: str,
    topic: str,
    batch_size: int,
    count: int,
    handle: Callable[[Any], None],
    sync_commit: bool,
    prepare: Callable[[list[Any]], Any] = lambda msgs: msgs,
) -> float:
    """Consume `count` records in batches and call `handle` on each; records/s in steady state: the first batch
    (group join, a fresh processor's schema resolution) is left out for every path alike, as the first-batch
    bench measures it.

    `sync_commit`: commit synchronously after each batch (the loop the throughput goals were set against; the
    commit's round trip, about 6 ms on Kafka 4.1 with its coordinator's append linger, is then part of every
    batch). Otherwise the extension's loop: offsets stored once the batch returns and auto-committed every
    `autoCommitIntervalMs` of host.json, which leaves little but the per-record work to compare.

    `prepare` turns the consumed messages into what `handle` takes, off the clock: the function path uses it
    for the host's side of an invocation (its serialisation, .NET work in production, emulated here)."""
    conf = KafkaHostOptions.from_host_json().consumer_conf(bootstrap, f"bench-{uuid.uuid4().hex[:8]}")
    consumer = Consumer({**conf, "auto.offset.reset": "earliest", "enable.auto.commit": not sync_commit})
    consumer.subscribe([topic])
    done, timed, started, untimed = 0, 0, 0.0, 0.0
    while done < count:
        msgs = [m for m in consumer.consume(batch_size, timeout=1.0) if m.error() is None]
        if not msgs:
            continue
        before = time.perf_counter()
        prepared = prepare(msgs)
        untimed += time.perf_counter() - before
        handle(prepared)
        offsets = next_offsets(topic, coordinates(msgs))
        if sync_commit:
            consumer.commit(offsets=offsets, asynchronous=False)
        else:
            consumer.store_offsets(offsets=offsets)
        if done:
            timed += len(msgs)
        else:
            started, untimed = time.perf_counter(), 0.0  # the clock starts once the warm-up batch is done
        done += len(msgs)
    elapsed = time.perf_counter() - started - untimed
    consumer.close()
    return timed / elapsed


def bench_throughput(bootstrap: str, registry: str, records: int, repeats: int = 3) -> None:
    """Each case `repeats` times (passthrough, settle, function path in turn, on a fresh stream each time);
    prints the median rates and the median of each run's ratio to its own passthrough. At MaxBatchSize 500 a
    run lasts well under a second, so a single one moved the ratio by several hundredths either way."""
    print(
        "\n(a) throughput: settle and the function path vs a raw passthrough (same broker, same batch loop); "
        f"median of {repeats} runs"
    )
    print(
        f"{'loop':>12}{'MaxBatchSize':>13}{'records':>9}{'passthrough rec/s':>19}{'settle rec/s':>14}{'ratio':>7}"
        f"{'function path rec/s':>21}{'ratio':>7}   settle ratios"
    )
    for sync_commit in (True, False):
        for batch_size in (1, 64, 500):
            n = min(records, 2_000) if batch_size == 1 else records
            runs = [_throughput_run(bootstrap, registry, n, batch_size, sync_commit) for _ in range(repeats)]
            base, settle, full = (statistics.median(r[i] for r in runs) for i in range(3))
            settle_ratios = [r[1] / r[0] for r in runs]
            full_ratio = statistics.median(r[2] / r[0] for r in runs)
            print(
                f"{'commit' if sync_commit else 'store+auto':>12}{batch_size:>13}{n:>9}{base:>19.0f}{settle:>14.0f}"
                f"{statistics.median(settle_ratios):>7.2f}{full:>21.0f}{full_ratio:>7.2f}   "
                f"{' '.join(f'{x:.2f}' for x in settle_ratios)}",
                flush=True,
            )


def _throughput_run(
    bootstrap: str, registry: str, n: int, batch_size: int, sync_commit: bool
) -> tuple[float, float, float]:
    """One run of a throughput case on its own stream: (passthrough, settle, function path) records/s."""
    run = uuid.uuid4().hex[:8]
    src, raw_out, out, dlq, fout = (f"bench-{x}-{run}" for x in ("in", "raw", "out", "dlq", "fout"))
    topics(bootstrap, src, raw_out, out, dlq, fout)
    produce_trades(bootstrap, registry, src, n, GeneratorConfig(seed=3))
    base = drive(bootstrap, src, batch_size, n, passthrough_function(bootstrap, raw_out), sync_commit)
    proc = services_for(bootstrap, registry, out, dlq).processor

    def settle_batch(msgs: list[Any]) -> None:
        proc.process([_record(m) for m in msgs])

    settle = drive(bootstrap, src, batch_size, n, settle_batch, sync_commit)
    host_side, worker_side = function_path(bootstrap, registry, fout, dlq)
    full = drive(bootstrap, src, batch_size, n, worker_side, sync_commit, prepare=host_side)
    return base, settle, full


def _annotation() -> Any:
    """The Kafka function's parameter annotation, which the converter checks on every call."""
    import function_app

    return kafka_annotation(function_app.app)


def function_path(
    bootstrap: str, registry: str, out: str, dlq: str
) -> tuple[Callable[[list[Any]], Any], Callable[[Any], None]]:
    """The invocation path production runs, in two halves: the host's (consumed records -> the data the
    worker receives; .NET in production, so off the clock) and the worker's (the library's converter, with
    its annotation check, -> the function), which is Python and timed."""
    import function_app

    os.environ.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SCHEMA_REGISTRY_URL": registry,
            "SETTLEMENTS_TOPIC": out,
            "DEAD_LETTER_TOPIC": dlq,
            # (a)'s baseline was set at-least-once; the exactly-once default would also need a group
            "SETTLEMENT_DELIVERY_GUARANTEE": AT_LEAST_ONCE,
        }
    )
    function_app.root.reset()
    annotation = _annotation()

    def host_side(msgs: list[Any]) -> Any:
        return trigger_input([HostRecord.of(m) for m in msgs])

    def worker_side(data: Any) -> None:
        body, metadata = data
        function_app.settle_user_trades(convert(body, metadata, annotation))

    return host_side, worker_side


def _record(msg: Any) -> InputRecord:
    return InputRecord(msg.key(), msg.value(), msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1])


def bench_coldstart(repeats: int = 7) -> None:
    print("\n(b) cold start: fresh interpreter, import time (median of", repeats, "runs)")
    deps = (
        "import azure.functions, confluent_kafka, confluent_kafka.schema_registry.protobuf, "
        "google.protobuf, json, logging"
    )
    cases = {"dependencies only": deps, "function_app": "import function_app"}
    results = {}
    for label, code in cases.items():
        times = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-c", f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            times.append(float(out.stdout.strip().splitlines()[-1]))
        results[label] = statistics.median(times)
        print(f"  {label:<20}{results[label] * 1000:>8.0f} ms")
    print(f"  ratio function_app / dependencies: {results['function_app'] / results['dependencies only']:.2f}")


def bench_latency(bootstrap: str, registry: str, rate: float, seconds: float) -> None:
    print(
        f"\n(c) end-to-end latency at {rate:.0f} rec/s for {seconds:.0f} s through the local host "
        "(input record timestamp -> the output's append time)"
    )
    print(f"{'path':>13}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    options = replace(KafkaHostOptions.from_host_json(), subscriber_interval_s=0.1)
    for label in ("passthrough", "settle"):
        p50, p99, top = _latency(bootstrap, registry, label, options, rate, seconds)
        print(f"{label:>13}{p50:>9.0f}{p99:>9.0f}{top:>9.0f}", flush=True)


def _latency(
    bootstrap: str,
    registry: str,
    label: str,
    options: KafkaHostOptions,
    rate: float,
    seconds: float,
    guarantee: str = AT_LEAST_ONCE,
    visible: bool = False,
) -> tuple[float, float, float]:
    """p50, p99 and max milliseconds from input record to output record, one instance, a paced stream. Under
    exactly-once a settlement is visible only once its transaction commits, so the figure is taken by a
    read_committed reader as records arrive (arrival time against the trade's timestamp), not from the
    settlement's own timestamp. `visible` measures that way (after a warm-up stream) for either guarantee."""
    run = uuid.uuid4().hex[:8]
    src, out, dlq = (f"lat-{x}-{run}" for x in ("in", "out", "dlq"))
    topics(bootstrap, src, dlq, partitions=3)
    # The broker stamps each output with its append time: a settlement's own timestamp is its trade's.
    create_topics(bootstrap, {out: 3}, {"message.timestamp.type": "LogAppendTime"})
    function: Callable[[list[Any]], object]
    watcher = _ArrivalWatcher(bootstrap, out) if visible else None
    if label == "settle":
        proc = services_for(bootstrap, registry, out, dlq, guarantee).processor
        function = lambda events: proc.process([from_kafka_event(e) for e in events])  # noqa: E731
    else:
        raw = passthrough_function(bootstrap, out)
        function = lambda events: raw([_Event(e) for e in events])  # noqa: E731

    binding = TriggerBinding(
        "bench", src, f"lat-{run}", bootstrap, "MANY", "BINARY", 10**9, function, annotation=_annotation()
    )
    host = LocalHost(binding, options, 3)
    host.start(1)
    n = int(rate * seconds)
    if watcher is not None:
        # Steady state: a warm-up stream first (the group join, a fresh processor, and under exactly-once
        # each partition's init_transactions), its figures dropped, as for the passthrough's first batch.
        warm = 60
        produce_trades(bootstrap, registry, src, warm, GeneratorConfig(seed=6), rate=rate)
        host.run_until(lambda: len(watcher.latencies) >= warm, 120, autoscale=False, tick_s=0.2)
        watcher.latencies.clear()
    produce_trades(bootstrap, registry, src, n, GeneratorConfig(seed=5), rate=rate)
    if watcher is not None:
        host.run_until(lambda: len(watcher.latencies) >= n, 120, autoscale=False, tick_s=0.2)
        host.stop()
        watcher.stop()
        lat = sorted(watcher.latencies)
        return percentile(lat, 0.5), percentile(lat, 0.99), lat[-1]
    host.run_until(lambda: high_watermarks(bootstrap, out) >= n, 120, autoscale=False, tick_s=0.2)
    host.stop()
    ins = {(m.partition(), m.offset()): m.timestamp()[1] for m in read_all(bootstrap, src, n)}
    outs = read_all(bootstrap, out, n)
    if label == "settle":
        lat = sorted(float(m.timestamp()[1] - settlement_of(m).timestamp) for m in outs)
    else:
        lat = sorted(float(m.timestamp()[1] - ins[_source(m)]) for m in outs)
    return percentile(lat, 0.5), percentile(lat, 0.99), lat[-1]


class _ArrivalWatcher:
    """A read_committed reader of the settlement topic, noting when each settlement became visible."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        import threading

        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"watch-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
            }
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._consumer.consume(500, timeout=0.01):
                if m.error() is None:
                    self.latencies.append(time.time() * 1000 - settlement_of(m).timestamp)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


class _Event:
    """A func.KafkaEvent seen through the Message accessors the passthrough uses."""

    def __init__(self, event: Any) -> None:
        self._e = event

    def key(self) -> bytes | None:
        return self._e.key.encode() if self._e.key else None

    def value(self) -> bytes:
        return bytes(self._e.get_body())

    def partition(self) -> int:
        return int(self._e.partition)

    def offset(self) -> int:
        return int(self._e.offset)


def _source(msg: Any) -> tuple[int, int]:
    partition, offset = dict(msg.headers() or [])["src"].decode().split(":")
    return int(partition), int(offset)


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_rss(bootstrap: str, registry: str, records: int) -> None:
    print(f"\n(d) resident memory while settling {records:,} records (batches of 500, real broker)")
    run = uuid.uuid4().hex[:8]
    out, dlq = f"rss-out-{run}", f"rss-dlq-{run}"
    topics(bootstrap, out, dlq)
    proc = services_for(bootstrap, registry, out, dlq).processor
    encode = value_encoder(registry, f"rss-in-{run}")
    template = [(k.encode() if k else None, encode(t)) for k, t in trades(5000, GeneratorConfig(seed=9))]
    print(f"{'records':>12}{'RSS MB':>9}{'rec/s':>9}")
    done, started, last = 0, time.perf_counter(), time.perf_counter()
    print(f"{0:>12}{_rss_mb():>9.1f}{'':>9}")
    while done < records:
        batch = [
            InputRecord(k, v, "rss-in", 0, done + i, 1_795_000_000_000 + done + i)
            for i, (k, v) in enumerate(template[done % 5000 : done % 5000 + 500])
        ]
        proc.process(batch)
        done += len(batch)
        if done % (records // 10) == 0:
            now = time.perf_counter()
            print(f"{done:>12,}{_rss_mb():>9.1f}{(records // 10) / (now - last):>9.0f}", flush=True)
            last = now
    print(
        f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB; "
        f"{records / (time.perf_counter() - started):.0f} rec/s overall"
    )


def _host_rate(
    bootstrap: str,
    registry: str,
    records: int,
    instances: int,
    options: KafkaHostOptions,
    guarantee: str = AT_LEAST_ONCE,
    repair_schedule: str | None = None,
    app: dict[str, str] | None = None,
    registry_conf: dict[str, Any] | None = None,
) -> float:
    """Records per second of the main job's host with `instances` instance processes (each importing the app,
    its own producer) on 4 partitions, from the moment every instance has reported a batch until 95 % of the
    stream is settled, read from the instances' own batch reports every 20 ms. Starting the clock only then
    leaves out process start-up, first batches, and the group's rebalance: a joining consumer waits for the
    others to rejoin, which they do at their next heartbeat (3 s), so a short stream is over before a second
    instance gets a partition."""
    import function_app

    run = uuid.uuid4().hex[:8]
    src, out, dlq = (f"scale-{x}-{run}" for x in ("in", "out", "dlq"))
    topics(bootstrap, src, dlq, partitions=4)
    # 1,000 users, not the demo's 9: nine keys hash to 4 partitions unevenly (a third of the stream on one),
    # and the busiest partition, not the instance count, would then bound the figure.
    produce_trades(bootstrap, registry, src, records, GeneratorConfig(seed=4, users=1000), registry_conf=registry_conf)
    # As many settlement partitions as source partitions, as scripts/run.sh creates them (exactly-once then
    # writes each transaction to one settlement partition).
    topics(bootstrap, out, partitions=4)
    settings = run_settings(
        bootstrap, registry, src, out, dlq, f"scale-{run}", SETTLEMENT_DELIVERY_GUARANTEE=guarantee, **(app or {})
    )
    # The trigger's authentication is baked into the binding when the app is imported (as the host indexes it):
    # index it again under this case's settings, so the host's own consumers sign in as the case says.
    saved = dict(os.environ)
    os.environ.update({**settings, "SETTLEMENT_WARM_START": "false"})
    try:
        binding = load_binding(importlib.reload(function_app).app, settings)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    # The repair timer runs only where a case asks for it (bench (k) measures what it costs), on one of the
    # instances as on Premium; its schedule is baked in at indexing, so the case's schedule is the timer's here.
    timers = []
    if repair_schedule:
        timers = [replace(t, schedule=repair_schedule) for t in load_timers(function_app.app, settings)]
    host = LocalHost(binding, options, 4, app="function_app:app", settings=settings, timers=timers)
    marks: list[tuple[float, int]] = []
    host.start(instances)

    def done() -> bool:
        if not marks and len(host.stats.pids) == instances:  # every instance has a partition and is warm
            marks.append((time.perf_counter(), host.stats.records))
        if len(marks) == 1 and host.stats.records >= 0.95 * records:
            marks.append((time.perf_counter(), host.stats.records))
        return len(marks) == 2

    finished = host.run_until(done, 600, autoscale=False, tick_s=0.02)
    host.stop()
    if not finished:
        raise RuntimeError(f"{instances} instances: not all took part before 95 % of the stream was settled")
    (t0, r0), (t1, r1) = marks
    return (r1 - r0) / (t1 - t0)


K = TypeVar("K")


def _rates_in_turn(
    bootstrap: str,
    registry: str,
    records: int,
    cases: dict[K, tuple[int, KafkaHostOptions]] | dict[K, tuple[int, KafkaHostOptions, str]],
    repeats: int,
) -> dict[K, list[float]]:
    """`_host_rate` of each case (instances, options) `repeats` times, the cases taken in turn so that drift on
    the machine hits every case alike, after an unmeasured full-size warm-up run: the broker's JIT makes its
    first runs slower (a quarter-size warm-up left the first measured run 20 % below the others)."""
    _host_rate(bootstrap, registry, records, 1, KafkaHostOptions.from_host_json())
    rates: dict[K, list[float]] = {key: [] for key in cases}
    for _ in range(repeats):
        for key, case in cases.items():
            rates[key].append(_host_rate(bootstrap, registry, records, *case))
    return rates


def bench_pythons(bootstrap: str, registry: str, records: int, versions: list[str], repeats: int = 5) -> None:
    """(l): `host-rate` under each version's interpreter, in turn, after an unmeasured warm-up run (the broker's JIT);
    prints each version's median and runs, and the median of each round's ratio to the first version."""
    pythons = {}
    for version in versions:
        made = subprocess.run(
            ["bash", str(ROOT / "scripts" / "venv_for.sh"), version], capture_output=True, text=True, check=True
        )
        pythons[version] = made.stdout.strip().splitlines()[-1]

    def rate(version: str) -> float:
        done = subprocess.run(
            [pythons[version], str(ROOT / "bench" / "bench.py"), "host-rate", "--scale-records", str(records)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return float(json.loads(done.stdout.strip().splitlines()[-1])["rate"])

    print(
        f"\n(l) pythons: the main job's host, 1 instance process, exactly-once, {records} records, versions in turn, "
        f"median of {repeats}"
    )
    rate(versions[0])
    rates: dict[str, list[float]] = {v: [] for v in versions}
    for _ in range(repeats):
        for version in versions:
            rates[version].append(rate(version))
    base = versions[0]
    print(f"{'Python':>8}{'rec/s':>9}{'ratio':>7}   runs")
    for version in versions:
        ratio = statistics.median(r / b for r, b in zip(rates[version], rates[base], strict=True))
        runs = " ".join(f"{r:.0f}" for r in rates[version])
        print(f"{version:>8}{statistics.median(rates[version]):>9.0f}{ratio:>7.2f}   {runs}", flush=True)


def bench_auth(state: stack.StackState, records: int, repeats: int = 3) -> None:
    """(m) keyless against API keys: the same stream settled by one instance process under exactly-once, once
    with every client on tokens (devstack/keyless.py) and once on the plain listener, in turn, median of
    `repeats` after a warm-up of each."""
    from devstack import keyless

    state = stack.secure_registry(state)
    keyless.set_fault(state, None)
    keyless.set_lifetime(state, 60)
    ours = KafkaHostOptions.from_host_json()
    app, conf = keyless.app_settings(state), keyless.harness_registry_conf(state)
    plain = (state.bootstrap_servers, state.registry_url)
    secure = (state.bootstrap_servers, state.secure_registry_url)
    print(f"\n(m) auth: {records:,} records on 4 partitions, one instance, exactly-once; median of {repeats}")
    _host_rate(*plain, records, 1, ours, EXACTLY_ONCE)
    _host_rate(*secure, records, 1, ours, EXACTLY_ONCE, app=app, registry_conf=conf)
    key: list[float] = []
    entra: list[float] = []
    for _ in range(repeats):
        key.append(_host_rate(*plain, records, 1, ours, EXACTLY_ONCE))
        entra.append(_host_rate(*secure, records, 1, ours, EXACTLY_ONCE, app=app, registry_conf=conf))
        print(f"  round: key {key[-1]:.0f} rec/s, entra {entra[-1]:.0f} rec/s", flush=True)
    pairs = [e / k for e, k in zip(entra, key, strict=True)]
    print(
        f"entra/key: {statistics.median(entra) / statistics.median(key):.3f} (key {statistics.median(key):.0f}, "
        f"entra {statistics.median(entra):.0f} rec/s; per round: median {statistics.median(pairs):.3f}, spread "
        f"{min(pairs):.3f}-{max(pairs):.3f})"
    )


def bench_scaleout(bootstrap: str, registry: str, records: int, repeats: int = 5) -> None:
    """The main job's host (host.json's settings) with 1, 2 and 4 instance processes; the median of `repeats`
    runs in turn (over three runs the median still moved by ±0.08)."""
    print(
        f"\n(e) scale-out: {records:,} records on 4 partitions, instances as processes "
        f"(the broker and the registry share the cores); median of {repeats} runs"
    )
    options = KafkaHostOptions.from_host_json()
    rates = _rates_in_turn(bootstrap, registry, records, {n: (n, options) for n in (1, 2, 4)}, repeats)
    print(f"{'instances':>10}{'rec/s':>10}{'vs 1':>7}   runs")
    base = statistics.median(rates[1])
    for n, runs in rates.items():
        rate = statistics.median(runs)
        print(f"{n:>10}{rate:>10.0f}{rate / base:>7.2f}   {' '.join(f'{r:.0f}' for r in runs)}", flush=True)


def bench_channel(bootstrap: str, registry: str, records: int) -> None:
    """One instance process under the extension's executor-channel settings: its defaults (capacity 1, a
    50 ms sleep while the channel is full) against host.json's. With a function faster than the sleep, the
    sleep sets the pace, so the defaults get a smaller stream (the figure is a rate either way)."""
    ours = KafkaHostOptions.from_host_json()
    cases = [
        ("extension defaults", replace(ours, executor_channel_capacity=1, channel_full_retry_interval_ms=50)),
        ("capacity 1, 5 ms", replace(ours, executor_channel_capacity=1, channel_full_retry_interval_ms=5)),
        ("host.json", ours),
    ]
    print(f"\n(g) executor channel: one instance process, maxBatchSize {ours.max_batch_size}")
    print(f"{'settings':>22}{'capacity':>10}{'retry ms':>10}{'rec/s':>10}")
    for name, options in cases:
        count = records if options.channel_full_retry_interval_ms < 10 else records // 10
        rate = _host_rate(bootstrap, registry, count, 1, options)
        print(
            f"{name:>22}{options.executor_channel_capacity:>10}{options.channel_full_retry_interval_ms:>10}"
            f"{rate:>10.0f}",
            flush=True,
        )


def bench_batch_size(bootstrap: str, registry: str, records: int, repeats: int = 3) -> None:
    """host.json's maxBatchSize against the extension's default: instance processes' throughput (1 and 2, in
    turn, median of `repeats`) and what a larger batch costs in latency when the stream is
    slower than a batch per subscriber interval (500 rec/s, host.json's 1 s interval, one instance)."""
    ours = KafkaHostOptions.from_host_json()
    sizes = sorted({64, ours.max_batch_size})
    print(f"\n(h) maxBatchSize: {records:,} records on 4 partitions; latency at 500 rec/s for 10 s")
    print(f"{'maxBatchSize':>13}{'1 instance':>12}{'2 instances':>13}{'vs 1':>7}{'p50 ms':>9}{'p99 ms':>9}")
    cases = {(size, n): (n, replace(ours, max_batch_size=size)) for size in sizes for n in (1, 2)}
    rates = _rates_in_turn(bootstrap, registry, records, cases, repeats)
    for size in sizes:
        one, two = statistics.median(rates[(size, 1)]), statistics.median(rates[(size, 2)])
        p50, p99, _ = _latency(bootstrap, registry, "settle", replace(ours, max_batch_size=size), 500.0, 10.0)
        print(f"{size:>13}{one:>12.0f}{two:>13.0f}{two / one:>7.2f}{p50:>9.0f}{p99:>9.0f}", flush=True)


def bench_guarantee(bootstrap: str, registry: str, records: int, repeats: int = 5) -> None:
    """(i) exactly-once against at-least-once at host.json's settings: instance processes through the function
    path (1 instance each, 2 instances under exactly-once), in turn, median of `repeats`; latency as a
    read_committed reader sees it at 500 rec/s; what one instance holding 100 partitions costs."""
    ours = KafkaHostOptions.from_host_json()
    print(
        f"\n(i) delivery guarantee: {records:,} records on 4 partitions, maxBatchSize {ours.max_batch_size}, "
        f"instances as processes; median of {repeats}"
    )
    cases = {
        (AT_LEAST_ONCE, 1): (1, ours, AT_LEAST_ONCE),
        (EXACTLY_ONCE, 1): (1, ours, EXACTLY_ONCE),
        (EXACTLY_ONCE, 2): (2, ours, EXACTLY_ONCE),
    }
    rates = _rates_in_turn(bootstrap, registry, records, cases, repeats)
    med = {key: statistics.median(runs) for key, runs in rates.items()}
    print(f"{'guarantee':>15}{'instances':>10}{'rec/s':>10}   runs")
    for (guarantee, n), runs in rates.items():
        print(f"{guarantee:>15}{n:>10}{med[(guarantee, n)]:>10.0f}   {' '.join(f'{r:.0f}' for r in runs)}")
    print(f"  exactly-once, 2 instances against 1: {med[(EXACTLY_ONCE, 2)] / med[(EXACTLY_ONCE, 1)]:.2f}")
    latency_options = replace(ours, subscriber_interval_s=0.1)
    print(
        f"{'guarantee':>15}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        "   (visible to a read_committed reader, 500 rec/s, after a warm-up)"
    )
    p99 = {}
    for guarantee in GUARANTEES:
        p50, p99[guarantee], top = _latency(
            bootstrap, registry, "settle", latency_options, 500.0, 10.0, guarantee, visible=True
        )
        print(f"{guarantee:>15}{p50:>9.0f}{p99[guarantee]:>9.0f}{top:>9.0f}", flush=True)
    print(f"  p99 exactly-once/at-least-once: {p99[EXACTLY_ONCE] / p99[AT_LEAST_ONCE]:.2f}")
    _hundred_partitions(bootstrap, registry)
    ratio = med[(EXACTLY_ONCE, 1)] / med[(AT_LEAST_ONCE, 1)]
    # Each round's own ratio (the cases ran in turn): the spread says how far one run can be trusted.
    pairs = [e / a for e, a in zip(rates[(EXACTLY_ONCE, 1)], rates[(AT_LEAST_ONCE, 1)], strict=True)]
    print(
        f"exactly-once/at-least-once at host.json settings: {ratio:.2f} (per round: median "
        f"{statistics.median(pairs):.2f}, spread {min(pairs):.2f}-{max(pairs):.2f} over {len(pairs)} rounds)"
    )


def _threads() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def _hundred_partitions(bootstrap: str, registry: str, partitions: int = 100) -> None:
    """One process holding `partitions` source partitions under exactly-once: a batch with one record of each
    (a producer, `init_transactions` and a pinned position per partition), then a warm batch alike."""
    run = uuid.uuid4().hex[:8]
    src, out, dlq = (f"hp-{x}-{run}" for x in ("in", "out", "dlq"))
    topics(bootstrap, src, out, partitions=partitions)
    topics(bootstrap, dlq)
    encode = value_encoder(registry, src)
    producer = Producer({"bootstrap.servers": bootstrap})
    for p in range(partitions):
        for k, t in trades(2, GeneratorConfig(seed=p)):
            producer.produce(src, key=k, value=encode(t), partition=p)
    producer.flush(30)
    msgs = read_to_end(bootstrap, src)
    first = [_record(m) for m in msgs if (m.offset() or 0) == 0]
    second = [_record(m) for m in msgs if (m.offset() or 0) == 1]
    before_rss, before_threads = _rss_mb(), _threads()
    services = services_for(bootstrap, registry, out, dlq, EXACTLY_ONCE)
    proc = services.processor
    started = time.perf_counter()
    proc.process(first)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    proc.process(second)
    warm = time.perf_counter() - started
    print(
        f"  {partitions} partitions in one process: first batch {cold * 1000:.0f} ms ({cold * 1000 / partitions:.1f} ms"
        f" a partition to take), warm batch {warm * 1000:.0f} ms; threads {before_threads} -> {_threads()}, "
        f"RSS {before_rss:.0f} -> {_rss_mb():.0f} MB"
    )
    services.close()


def bench_repair(bootstrap: str, registry: str, records: int, repeats: int = 5) -> None:
    """(k) The repair timer: one run's cost on idle topics of 6 and 100 partitions (in process, warm, median of
    `repeats`), and the settling throughput with it running every 2 s against without it, the two cases taken
    in turn `repeats` times (2 instance processes, exactly-once)."""
    print(f"\n(k) the repair timer (median of {repeats}, spread in brackets)")
    for partitions in (6, 100):
        run = uuid.uuid4().hex[:8]
        src, out, dlq = (f"rep-{x}-{run}" for x in ("in", "out", "dlq"))
        topics(bootstrap, src, out, partitions=partitions)
        topics(bootstrap, dlq)
        services = services_for(bootstrap, registry, out, dlq, EXACTLY_ONCE)
        assert services.exactly_once is not None
        repair = services.exactly_once.repair(src, f"bench-{run}", {"bootstrap.servers": bootstrap}, stall_after_s(0.3))
        costs, calls = [], 0
        for _ in range(repeats + 1):
            report = repair.run(30.0)
            assert report is not None
            costs.append(report.elapsed_ms)
            calls = report.admin_calls
        costs = costs[1:]  # the first run builds the admin client's connections
        print(
            f"  one run on {partitions:>3} partitions: {statistics.median(costs):6.1f} ms "
            f"[{min(costs):.1f}-{max(costs):.1f}], {calls} admin requests"
        )
        services.close()
    options = KafkaHostOptions.from_host_json()
    cases = {
        "without the repair": (2, options, EXACTLY_ONCE, None),
        "repair every 2 s": (2, options, EXACTLY_ONCE, "*/2 * * * * *"),
    }
    rates: dict[str, list[float]] = _rates_in_turn(bootstrap, registry, records, cases, repeats)  # type: ignore[arg-type]
    med = {k: statistics.median(v) for k, v in rates.items()}
    for key, runs in rates.items():
        print(f"  {key:<20}{med[key]:>9.0f} rec/s   runs {' '.join(f'{r:.0f}' for r in runs)}")
    ratios = [a / b for a, b in zip(rates["repair every 2 s"], rates["without the repair"], strict=True)]
    print(
        f"  with/without: {med['repair every 2 s'] / med['without the repair']:.3f} (pairwise "
        f"{statistics.median(ratios):.3f}, spread {min(ratios):.3f}-{max(ratios):.3f})"
    )


def bench_cold_from_zero(bootstrap: str, registry: str, repeats: int = 3) -> None:
    """(k) Flex from zero instances: one trade arrives, the scaler (evaluating every second here) sees lag,
    starts an instance process (spawn, import the app, warm start, join the group), which settles it; the time
    until a read_committed reader sees its settlement, against one more trade while that instance is warm."""
    import function_app

    cold: list[float] = []
    warm: list[float] = []
    for _ in range(repeats):
        run = uuid.uuid4().hex[:8]
        src, out, dlq = (f"zero-{x}-{run}" for x in ("in", "out", "dlq"))
        topics(bootstrap, src, out, dlq)
        settings = run_settings(bootstrap, registry, src, out, dlq, f"zero-{run}")
        binding = load_binding(function_app.app, settings)
        host = LocalHost(
            binding, KafkaHostOptions.from_host_json(), 1, app="function_app:app", settings=settings,
            plan="flex", evaluation_interval_s=1.0, timers=[],
        )  # fmt: skip
        watcher = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"zero-{run}-w", "isolation.level": "read_committed"}
        )
        watcher.assign([TopicPartition(out, 0, 0)])
        try:
            for label, times in (("cold", cold), ("warm", warm)):
                sent = time.monotonic()
                produce_trades(bootstrap, registry, src, 1, GeneratorConfig(seed=len(times)))
                seen = None

                def visible(watcher: Any = watcher) -> bool:
                    nonlocal seen
                    msgs = [m for m in watcher.consume(10, timeout=0.01) if m.error() is None]
                    seen = seen or (time.monotonic() if msgs else None)
                    return seen is not None

                if not host.run_until(visible, 60, tick_s=0.01):
                    raise RuntimeError(f"{label}: the trade was not visible within 60 s")
                assert seen is not None
                times.append(seen - sent)
        finally:
            watcher.close()
            host.stop()
    print(
        f"  Flex from zero instances: first settlement visible {statistics.median(cold):.2f} s after its trade "
        f"(runs {' '.join(f'{c:.2f}' for c in cold)}); the next trade on the warm instance "
        f"{statistics.median(warm):.2f} s ({' '.join(f'{w:.2f}' for w in warm)})"
    )


def bench_first_batch(bootstrap: str, registry: str, size: int = 64, repeats: int = 5) -> None:
    """A fresh process's first batch (settings, registry client, producer connection, schema resolution, first
    produce) against a warm batch of the same size in the same process; import time beside it."""
    import pickle
    import tempfile

    from localrun.platform.invocation import HostRecord

    print(f"\n(f) first batch of {size} in a fresh process vs a warm batch (median of {repeats})")
    run = uuid.uuid4().hex[:8]
    src, out, dlq = (f"first-{x}-{run}" for x in ("in", "out", "dlq"))
    topics(bootstrap, src, out, dlq)
    produce_trades(bootstrap, registry, src, 2 * size, GeneratorConfig(seed=6))
    records = [HostRecord.of(m) for m in read_all(bootstrap, src, 2 * size)]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SCHEMA_REGISTRY_URL": registry,
        "USER_TRADES_TOPIC": src,
        "SETTLEMENTS_TOPIC": out,
        "DEAD_LETTER_TOPIC": dlq,
    }
    print(
        f"{'SETTLEMENT_WARM_START':>22}{'import ms':>11}{'first batch ms':>16}{'warm batch ms':>15}{'first/warm':>12}"
    )
    with tempfile.NamedTemporaryFile(suffix=".pickle") as f:
        f.write(pickle.dumps((records[:size], records[size:])))
        f.flush()
        for warm_start in ("false", "true"):
            results = []
            for _ in range(repeats):
                proc = subprocess.run(
                    [sys.executable, str(ROOT / "bench" / "first_batch.py"), f.name],
                    env={**env, "SETTLEMENT_WARM_START": warm_start},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            med = {k: statistics.median(r[k] for r in results) for k in results[0]}
            print(
                f"{warm_start:>22}{med['import_ms']:>11.0f}{med['first_batch_ms']:>16.1f}{med['warm_batch_ms']:>15.1f}"
                f"{med['first_batch_ms'] / med['warm_batch_ms']:>8.1f}"
            )


def bench_decode(records: int, repeats: int = 5) -> None:
    """(j): ns per record through `TradeDecoder`, best of `repeats`, per writer layout."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from localrun.experiments import ksql_schema
    from settlement.serde import TradeDecoder, frame_header

    client = SchemaRegistryClient.new_client({"url": f"mock://bench-{uuid.uuid4().hex}"})
    ours = ksql_schema.COLUMNS
    moved = (ours[0], ours[1], ("EXCHANGE", "string"), ours[4], ours[2], ours[3], ours[5])
    widened = (ours[0], ("QUANTITY", "int64"), ours[2], ("PRICE", "int64"), ours[4], ours[5])
    values = {"REGIONID": "Region_1", "QUANTITY": 100, "SYMBOL": "ZVV", "PRICE": 50, "ACCOUNT": "A1", "SIDE": "BUY"}
    decoder = TradeDecoder(client)
    results: dict[str, float] = {}
    for label, cols in (("ours (fast path)", ours), ("columns moved (view)", moved), ("widened (view+check)", widened)):
        text = ksql_schema.schema_text(columns=cols)
        schema_id = ksql_schema.register(client, f"{label}-value", text)
        cls = ksql_schema.writer_class(text)
        value = frame_header(schema_id) + cls(**{n: values.get(n, "NYSE") for n, _ in cols}).SerializeToString()
        batch = [value] * records
        decode = decoder.for_batch()
        decode(value)  # resolve the schema outside the timing
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for v in batch:
                decode(v)
            best = min(best, time.perf_counter() - start)
        results[label] = best / records * 1e9
    base = results["ours (fast path)"]
    print(f"(j) decode by column name, {records:,} records, best of {repeats}:")
    for label, ns in results.items():
        print(f"    {label:<24} {ns:8.0f} ns/record   {ns / base:5.2f}x the fast path")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=[
            "throughput",
            "coldstart",
            "latency",
            "rss",
            "scaleout",
            "firstbatch",
            "channel",
            "batchsize",
            "guarantee",
            "decode",
            "repair",
            "pythons",
            "auth",
            "all",
            "host-rate",  # one (l) run in this interpreter: prints {"rate": rec/s}
        ],
    )
    parser.add_argument("--records", type=int, default=20_000, help="records per throughput case")
    parser.add_argument("--rss-records", type=int, default=1_000_000)
    parser.add_argument("--scale-records", type=int, default=400_000)
    parser.add_argument("--channel-records", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pythons", nargs="+", default=["3.11", "3.13"], help="(l): versions, the first the baseline")
    parser.add_argument("--auth-repeats", type=int, default=3, help="(m): rounds of key and entra in turn")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if args.which == "coldstart":
        bench_coldstart()
        return 0
    if args.which == "decode":
        bench_decode(args.records * 10)
        return 0
    with stack.running() as state:
        bootstrap, registry = state.bootstrap_servers, state.registry_url
        if args.which == "host-rate":
            options = KafkaHostOptions.from_host_json()
            print(json.dumps({"rate": _host_rate(bootstrap, registry, args.scale_records, 1, options, EXACTLY_ONCE)}))
            return 0
        if args.which in ("pythons", "all"):
            bench_pythons(bootstrap, registry, args.scale_records, args.pythons)
        if args.which in ("throughput", "all"):
            bench_throughput(bootstrap, registry, args.records)
        if args.which in ("coldstart", "all"):
            bench_coldstart()
        if args.which in ("latency", "all"):
            bench_latency(bootstrap, registry, args.rate, args.seconds)
        if args.which in ("rss", "all"):
            bench_rss(bootstrap, registry, args.rss_records)
        if args.which in ("scaleout", "all"):
            bench_scaleout(bootstrap, registry, args.scale_records)
        if args.which in ("firstbatch", "all"):
            bench_first_batch(bootstrap, registry)
        if args.which in ("channel", "all"):
            bench_channel(bootstrap, registry, args.channel_records)
        if args.which in ("batchsize", "all"):
            bench_batch_size(bootstrap, registry, args.scale_records)
        if args.which in ("guarantee", "all"):
            bench_guarantee(bootstrap, registry, args.scale_records)
        if args.which in ("repair", "all"):
            bench_repair(bootstrap, registry, args.scale_records)
            bench_cold_from_zero(bootstrap, registry)
        if args.which in ("auth", "all"):
            bench_auth(state, args.scale_records, args.auth_repeats)
    if args.which == "all":
        bench_decode(args.records * 10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
