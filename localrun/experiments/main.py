"""The main job: the whole pipeline on this machine, end to end.

Brings up the local stack and the Flink engine, creates this run's topics, generates `stocktrade` and `users` as
the Datagen quickstarts write them, joins them on Flink into `user_trades` (flink/02-user-trades.sql; a few poison
records added), hosts the real function with the local Kafka-trigger host while the join runs, analyses the
settlements on Flink (flink/04-settlement-analysis.sql), then prints a summary and checks every end: every trade
joined with the users row valid at its time, inputs = settlements + dead letters (none lost or settled twice),
every analysis window equal to the same figure computed here from the settlements. `--no-engine` skips Flink: the
generator then writes `user_trades` as the join would, and the run stops at the settlements.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from confluent_kafka import KafkaException, Producer

from devstack import keyless, stack
from devstack.errors import StackError
from devstack.flink import FlinkError
from localrun.experiments.accounting import Coverage, bucket_percentile, coverage, delivered_twice, unexplained
from localrun.experiments.charts import Sample, run_chart
from localrun.experiments.drain import Drain
from localrun.experiments.generator import GeneratorConfig, produce_trades
from localrun.experiments.kafka import (
    create_topics,
    header,
    high_watermarks,
    nothing_pending,
    read_to_end,
    settlement_of,
)
from localrun.experiments.probes import Measurements, Probes
from localrun.experiments.stream_job import StreamRun
from localrun.platform.host import KafkaHostOptions, LocalHost, load_binding, run_settings
from localrun.platform.instance import Range
from localrun.platform.scaler import MODES, PLANS
from settlement.core import REASON
from settlement.runtime import EXACTLY_ONCE, GUARANTEES

RUNS_DIR = Path(__file__).resolve().parents[2] / ".runs"
POISON = (b"", b"not protobuf at all", b"\x00\x00\x00", b"\x00\x7f\xff\xff\xff\x00\x08\x01")


@dataclass(frozen=True)
class RunTopics:
    source: str
    settlements: str
    dead_letter: str
    group: str

    @classmethod
    def for_run(cls, run_id: str) -> RunTopics:
        return cls(
            f"user_trades-{run_id}",
            f"trade-settlements-{run_id}",
            f"user_trades-dlq-{run_id}",
            f"trade-settlement-{run_id}",
        )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrun", description=__doc__)
    parser.add_argument("--trades", type=int, default=1_000_000, help="trades to generate (default 1000000)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--instances", type=int, default=1, help="instances at start (the scaler may add more)")
    parser.add_argument(
        "--evaluation-interval",
        type=float,
        default=10.0,
        help="scale-controller evaluation interval in seconds (Azure: 30)",
    )
    parser.add_argument("--lag-threshold", type=int, default=None, help="override KAFKA_LAG_THRESHOLD")
    parser.add_argument("--scaling", choices=MODES, default="target", help="scale controller mode (default target)")
    parser.add_argument(
        "--plan",
        choices=tuple(PLANS),
        default="flex",
        help="flex: the trigger scales to zero at no lag and the run ends there, the repair timer on an instance of "
        "its own; premium: never below one instance, the timer on one of them (default flex)",
    )
    parser.add_argument(
        "--kill-after-last-batch",
        action="store_true",
        help="SIGKILL an instance the moment the trigger's lag reaches 0 (its last batch returned)",
    )
    parser.add_argument("--max-instances", type=int, default=None, help="cap instances (default: partitions)")
    parser.add_argument("--rate", type=float, default=None, help="generate at this many trades/s (default: max)")
    parser.add_argument(
        "--guarantee",
        choices=GUARANTEES,
        default=EXACTLY_ONCE,
        help=f"SETTLEMENT_DELIVERY_GUARANTEE (default {EXACTLY_ONCE}): under it any duplicate fails the check",
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running afterwards")
    parser.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        default=1,
        help="3: run on `devstack up --brokers 3` (replication 3, min ISR 2, clients through toxiproxy)",
    )
    parser.add_argument(
        "--no-engine",
        action="store_true",
        help="skip the Flink engine: write user_trades directly as the join would, no analysis (a quick run)",
    )
    parser.add_argument(
        "--auth",
        choices=("key", "entra"),
        default="key",
        help="entra: our clients sign in with the managed identity's tokens and the trigger with OIDC client "
        "credentials, from the local issuer, against the broker's OAUTHBEARER listener and a registry that "
        "requires tokens (default key: the plain listener)",
    )
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=20,
        help="with --auth entra: seconds each token lives (default 20: a default run refreshes each process's token "
        "about twice mid-stream; Entra's live hours)",
    )
    parser.add_argument("--chart", type=Path, help="where to write the run's chart (default: .runs/run-<id>.png)")
    parser.add_argument("--no-chart", action="store_true", help="write no chart")
    parser.add_argument(
        "--python",
        metavar="X.Y",
        help="the Python the run is on: scripts/run.sh starts it in that version's env; here it is checked",
    )
    args = parser.parse_args(argv)
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if args.python and args.python != running:
        print(f"--python {args.python}: this is Python {running} (scripts/run.sh picks the env)", file=sys.stderr)
        return 2
    print(f"Python {sys.version.split()[0]} ({sys.executable})")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.auth == "entra" and args.brokers == 3:
        parser.error("--auth entra runs on the one-broker stack (its OAUTHBEARER listener)")
    try:
        if args.brokers == 3:
            from devstack import cluster

            with cluster.running(keep=args.keep_stack) as cluster_state:
                return _run(args, cluster_state.bootstrap_servers, cluster_state.registry_url, replication=3)
        with stack.running(keep=args.keep_stack) as state:
            if args.auth == "entra":
                return _run_keyless(args, state)
            return _run(args, state.bootstrap_servers, state.registry_url)
    except FlinkError as exc:
        print(f"flink: {exc}", file=sys.stderr)
        return 1
    except StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 2


def _run_keyless(args: argparse.Namespace, state: stack.StackState) -> int:
    """The run with every client signed in with tokens (devstack/keyless.py); the harness (generator, checks)
    keeps the plain listener. Prints the tokens the issuer handed out: each is a refresh by some client."""
    state = stack.secure_registry(state)
    keyless.set_fault(state, None)
    keyless.set_lifetime(state, args.token_lifetime)
    before = keyless.stats(state)
    processes: list[int] = []
    code = _run(
        args,
        state.bootstrap_servers,
        state.secure_registry_url,
        app=keyless.app_settings(state),
        registry_conf=keyless.harness_registry_conf(state),
        on_done=lambda host: processes.append(host.processes_started),
    )
    after = keyless.stats(state)
    issued = {k: after[k] - before[k] for k in ("managed_identity", "client_credentials", "refused")}
    started = processes[0] if processes else 0
    print(
        f"\ntokens ({args.token_lifetime} s each): the managed identity issued {issued['managed_identity']} to "
        f"{started} app processes ({max(0, issued['managed_identity'] - started)} refreshes mid-run), the trigger's "
        f"OIDC client got {issued['client_credentials']} (the harness's registry reads included); "
        f"{issued['refused']} token requests refused"
    )
    return code


def _run(
    args: argparse.Namespace,
    bootstrap: str,
    registry_url: str,
    replication: int = 1,
    app: dict[str, str] | None = None,
    registry_conf: dict[str, Any] | None = None,
    on_done: Callable[[LocalHost], None] | None = None,
) -> int:
    """One run, step by step; `app` overrides the function's settings (a keyless run's listener, registry and
    credentials) and `registry_conf` the harness's registry client (the generator's)."""
    run_id = uuid.uuid4().hex[:8]
    topics = _create_topics(bootstrap, run_id, args.partitions, replication)
    settings = _app_settings(args, bootstrap, registry_url, topics, app)
    function_app = _index_app(settings)
    print(f"run {run_id}: broker {settings['KAFKA_BOOTSTRAP_SERVERS']}, registry {registry_url}")
    if app:
        print("auth: our clients with the managed identity (entra), the trigger with OIDC client credentials")
    print(f"topics: {topics.source} -> {topics.settlements} (+ {topics.dead_letter}); {args.guarantee}")
    inputs = _produce_inputs(args, bootstrap, registry_url, run_id, topics, registry_conf)
    measurements = Measurements()
    host = _host(args, function_app.app, settings, measurements)
    watch = _Watch(args, bootstrap, topics, inputs.count, host)
    finished = _host_until_visible(args, host, measurements, watch)
    if on_done is not None:
        on_done(host)
    if not finished:
        print(f"timed out after {args.timeout:.0f}s with {watch.outputs}/{watch.inputs} outputs", file=sys.stderr)
    return _report(args, run_id, bootstrap, topics, inputs, host, measurements, watch)


def _create_topics(bootstrap: str, run_id: str, partitions: int, replication: int) -> RunTopics:
    """The run's own topics (on the cluster with min.insync.replicas 2) and consumer group."""
    topics = RunTopics.for_run(run_id)
    create_topics(
        bootstrap,
        {topics.source: partitions, topics.settlements: partitions, topics.dead_letter: 1},
        {"min.insync.replicas": "2"} if replication >= 3 else None,
        replication,
    )
    return topics


def _app_settings(
    args: argparse.Namespace, bootstrap: str, registry_url: str, topics: RunTopics, app: dict[str, str] | None
) -> dict[str, str]:
    """The function's app settings in this run: its broker, registry, topics, group and guarantee."""
    settings = run_settings(
        bootstrap,
        registry_url,
        topics.source,
        topics.settlements,
        topics.dead_letter,
        topics.group,
        SETTLEMENT_DELIVERY_GUARANTEE=args.guarantee,
        **(app or {}),
    )
    if args.lag_threshold is not None:
        settings["KAFKA_LAG_THRESHOLD"] = str(args.lag_threshold)
    return settings


def _index_app(settings: dict[str, str]) -> ModuleType:
    """The function app, imported under the run's settings as the host indexes it (the instances run it)."""
    os.environ.update(settings)  # the function reads app settings from the environment, as on Azure
    # This process only indexes the app (the instances run it): no warm start, no clients of its own.
    os.environ["SETTLEMENT_WARM_START"] = "false"
    import function_app  # imported after the settings exist, as the host does

    return function_app


@dataclass(frozen=True)
class _Inputs:
    count: int  # every record the run's check accounts for: trades and poison records
    last_trade_at: float  # monotonic: when the last of them was written
    stream: StreamRun | None  # the Flink part, when the join writes user_trades


def _produce_inputs(
    args: argparse.Namespace,
    bootstrap: str,
    registry_url: str,
    run_id: str,
    topics: RunTopics,
    registry_conf: dict[str, Any] | None,
) -> _Inputs:
    """`user_trades`: the trades, as the join writes them (on Flink, which goes on joining while the host runs;
    with --no-engine written here at once), then the poison records."""
    t0 = time.monotonic()
    stream: StreamRun | None = None
    if args.no_engine:
        sent = produce_trades(
            bootstrap, registry_url, topics.source, args.trades, GeneratorConfig(), args.rate,
            registry_conf=registry_conf,
        )  # fmt: skip
    else:
        stream = StreamRun.start(
            bootstrap, registry_url, run_id, topics.source, topics.settlements, args.partitions, args.trades, POISON,
            args.rate, registry_conf=registry_conf,
        )  # fmt: skip
        sent = args.trades
    raw = Producer({"bootstrap.servers": bootstrap})
    for i, value in enumerate(POISON):
        raw.produce(topics.source, key=f"User_{i}", value=value)
    raw.flush(30)
    last_trade_at = time.monotonic()
    if stream is None:
        print(f"generated {sent} trades + {len(POISON)} poison records in {time.monotonic() - t0:.1f}s")
    return _Inputs(sent + len(POISON), last_trade_at, stream)


def _host(args: argparse.Namespace, app: Any, settings: dict[str, str], measurements: Measurements) -> LocalHost:
    """The local host of the app's Kafka trigger, on host.json's options, each instance a process importing the
    app as on Azure, the experiments' probes in each (localrun/experiments/probes.py)."""
    return LocalHost(
        load_binding(app, settings),
        KafkaHostOptions.from_host_json(),
        args.partitions,
        evaluation_interval_s=args.evaluation_interval,
        app="function_app:app",
        settings=settings,
        scaling=args.scaling,
        max_instances=args.max_instances,
        plan=args.plan,
        hooks=Probes(),
        observers=[measurements],
    )


class _Watch:
    """What the run watches while the host runs: the outputs so far, when the trigger's work was done (`quiet`)
    and every record visible (`visible`), and a progress line and chart sample every two seconds."""

    def __init__(self, args: argparse.Namespace, bootstrap: str, topics: RunTopics, inputs: int, host: LocalHost):
        self.args = args
        self.bootstrap = bootstrap
        self.topics = topics
        self.inputs = inputs
        self.host = host
        self.drain = Drain(host, args.guarantee == EXACTLY_ONCE)
        self.outputs = 0
        self.ends: dict[str, float] = {}  # "quiet", "visible": monotonic
        self.samples: list[Sample] = []
        self.started = self._last_at = time.monotonic()  # `started`: set again as the host starts
        self._last_outputs = 0
        self.elapsed = 0.0  # from the start until the trigger's work was done (or the run stopped)

    def done(self) -> bool:
        """Output count alone is not enough: a batch redelivered after a rebalance writes its settlements twice,
        so the count reaches the input count while the last records are still unread. The group's lag (every
        input's offset committed, which happens only after its batch was acknowledged) decides when the trigger's
        work is done; then the run goes on as the platform does (Flex scales the trigger to zero, the repair timer
        keeps firing) until a read_committed reader can see every record: the ledger's lag is 0 and no open
        transaction holds an output partition back."""
        host, topics = self.host, self.topics
        try:
            self.outputs = high_watermarks(self.bootstrap, topics.settlements) + high_watermarks(
                self.bootstrap, topics.dead_letter
            )
        except KafkaException as exc:  # a broker too busy to answer within 10 s is not the run's end: ask again
            print(f"  output count unknown for now: {exc}", file=sys.stderr, flush=True)
            return False
        if "quiet" not in self.ends:
            if self.outputs < self.inputs or host.lag() != 0:
                return False
            self.ends["quiet"] = time.monotonic()
            if self.args.kill_after_last_batch and host.instances:
                print(f"  the trigger's lag is 0: killing instance pid {host.kill_instance(0)} (SIGKILL)", flush=True)
        if self.args.plan == "flex" and host.instances:
            return False  # the run ends as Flex does: at zero instances
        if not self.drain.done() or not nothing_pending(self.bootstrap, (topics.settlements, topics.dead_letter)):
            return False
        self.ends.setdefault("visible", time.monotonic())
        return True

    def close(self) -> None:
        self.drain.close()

    def progress(self, host: LocalHost) -> None:
        now = time.monotonic()
        if now - self._last_at < 2.0:
            return
        rate = (self.outputs - self._last_outputs) / (now - self._last_at)
        self._last_at, self._last_outputs = now, self.outputs
        lag = host.lag()
        self.samples.append(Sample(now - self.started, self.outputs, rate, lag, len(host.instances)))
        print(
            f"  {self.outputs:>8}/{self.inputs} settled or dead-lettered | {rate:8.0f} rec/s | "
            f"lag {lag:>7} | instances {len(host.instances)} (pids {' '.join(str(i.pid) for i in host.instances)})",
            flush=True,
        )


def _host_until_visible(args: argparse.Namespace, host: LocalHost, measurements: Measurements, watch: _Watch) -> bool:
    """Start the host, run it until every record is visible (or the timeout), stop it; whether every record was."""
    watch.started = time.monotonic()
    host.start(args.instances)
    measurements.started = host.started
    try:
        finished = host.run_until(watch.done, args.timeout, on_tick=watch.progress)
        watch.elapsed = watch.ends.get("quiet", time.monotonic()) - watch.started
    finally:
        host.stop()
        watch.close()
    return finished


def _report(
    args: argparse.Namespace,
    run_id: str,
    bootstrap: str,
    topics: RunTopics,
    inputs: _Inputs,
    host: LocalHost,
    measurements: Measurements,
    watch: _Watch,
) -> int:
    """Read back and check: the summary and the check of every input, how soon every record was visible, the
    Flink part's checks, the chart; the run's exit code."""
    exactly_once = args.guarantee == EXACTLY_ONCE
    code = _summary(
        bootstrap, topics, inputs.count, watch.elapsed, host, measurements, exactly_once, inputs.stream is not None
    )
    code = max(code, _visibility(watch.ends, inputs.last_trade_at, host, measurements, exactly_once))
    chart = None if args.no_chart else (args.chart or (RUNS_DIR / f"run-{run_id}.png"))
    if inputs.stream is not None:
        code = max(code, inputs.stream.finish(None if chart is None else chart.with_name(f"{chart.stem}-analysis.png")))
    if chart is not None:
        chart.parent.mkdir(parents=True, exist_ok=True)
        title = f"run {run_id}: {inputs.count:,} records, {args.partitions} partitions, {args.scaling} scaling"
        print(f"\nchart: {run_chart(watch.samples, host.scale_events, chart, title, measurements.lag_samples)}")
    return code


VISIBLE_BOUND_S = 60.0  # under exactly-once, every record visible within this after the trigger's last batch


def _visibility(
    ends: dict[str, float], last_trade_at: float, host: LocalHost, measurements: Measurements, exactly_once: bool
) -> int:
    """How long after the trigger's last batch (and after the last trade was produced) a read_committed reader
    could see every record; under exactly-once over `VISIBLE_BOUND_S` fails the run."""
    if "quiet" not in ends:
        return 1
    visible = ends.get("visible")
    repaired = f"; the repair timer ran {host.stats.timer_runs} times and settled {measurements.repaired} records"
    worst = max(
        ((t, sum(n for n, _ in lag.values()), max((a for _, a in lag.values()), default=0.0))
         for t, lag in measurements.lag_samples),
        key=lambda sample: sample[1],
        default=None,
    )  # fmt: skip
    if worst is not None:
        print(
            f"\nsettlement lag (the repair's gauges, {len(measurements.lag_samples)} runs): at most {worst[1]} records"
            f" (behind for {worst[2]:.1f}s at most) at {worst[0]:.0f}s"
        )
    if visible is None:
        print(f"\nvisibility: not every record visible to a read_committed reader by the end{repaired}")
        return 1
    after_quiet, after_trade = visible - ends["quiet"], visible - last_trade_at
    print(
        f"\nvisibility: every record visible to a read_committed reader {after_quiet:.1f}s after the trigger's last "
        f"batch ({after_trade:.1f}s after the last trade was produced), at {len(host.instances)} instances{repaired}"
    )
    if exactly_once and after_quiet > VISIBLE_BOUND_S:
        print(f"  over the {VISIBLE_BOUND_S:.0f}s bound")
        return 1
    return 0


def _summary(
    bootstrap: str,
    topics: RunTopics,
    inputs: int,
    elapsed: float,
    host: LocalHost,
    measurements: Measurements,
    exactly_once: bool,
    generated_times: bool = False,
) -> int:
    """Print what was settled and dead-lettered and the latency; the check's exit code. `generated_times`: the
    trades carry event times the run generated (the engine's sources), not the time they were written."""
    settled_msgs = read_to_end(bootstrap, topics.settlements)  # what a read_committed reader sees
    dead_msgs = read_to_end(bootstrap, topics.dead_letter)
    settlements = [settlement_of(m) for m in settled_msgs]
    by_disposition = Counter(s.disposition for s in settlements)
    by_symbol = Counter(s.symbol for s in settlements)
    by_reason = Counter(header(m, REASON) for m in dead_msgs)

    print(
        f"\nprocessed {inputs} records in {elapsed:.1f}s ({inputs / max(elapsed, 1e-9):.0f} rec/s), "
        f"{host.stats.batches} batches, peak instances {host.peak_instances} "
        f"({len(host.stats.pids)} processes did work); instances ran batches {host.stats.busy_s:.1f}s, and batches "
        f"spent {host.stats.channel_wait_s:.1f}s in all waiting for room in the extension's executor channel"
    )
    print("\nsettlements by disposition")
    for disposition, n in by_disposition.most_common():
        print(f"  {disposition:<14}{n:>9}")
    print("\nsettlements by symbol")
    for symbol, n in sorted(by_symbol.items()):
        print(f"  {symbol:<14}{n:>9}")
    print("\ndead letters by reason")
    for reason, n in by_reason.most_common():
        print(f"  {reason:<22}{n:>5}")
    print("\nend-to-end latency (trade record timestamp -> its batch acknowledged, as the host saw it)")
    if generated_times:
        print("  (the trades' timestamps are event times generated as a stream that began before this run, so this")
        print("   counts from them, not from when each trade was written: run with --no-engine for the function's own)")
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        print(f"  {label:<5}{bucket_percentile(measurements.latency, q):>9.0f} ms")

    counted = coverage(inputs, settlements, dead_msgs)
    return _check(inputs, counted, delivered_twice(measurements.ranges), exactly_once)


def _check(inputs: int, counted: Coverage, redelivered: list[Range], exactly_once: bool = False) -> int:
    """The run's verdict: every input record has an output. Under exactly-once a read_committed reader sees no
    record twice, whatever the host redelivered. Under at-least-once a record written twice must have been
    delivered to the function twice (its partition moved while its batch ran, so the next owner read it again,
    as the extension does); one delivered once and written twice is a defect."""
    defects = sorted(counted.duplicated) if exactly_once else unexplained(counted.duplicated, redelivered)
    ok = counted.lost == 0 and not defects
    print(
        f"\ncheck: inputs {inputs} = settlements {counted.settled} + dead letters {counted.dead_lettered}"
        f" - duplicates {counted.duplicates}; lost {counted.lost}: {'OK' if ok else 'MISMATCH'}"
    )
    redelivered_records = sum(hi - lo + 1 for _, lo, hi in redelivered)
    if exactly_once:
        print(
            f"  exactly-once: the host delivered {redelivered_records} records twice after rebalances; a"
            f" read_committed reader sees {counted.duplicates} of them twice"
        )
    elif counted.duplicates:
        print(
            f"  {counted.duplicates} outputs repeat a record; the host delivered {redelivered_records} records twice"
            " after rebalances (at-least-once: deduplicate on source_topic, source_partition, source_offset)"
        )
    if defects:
        what = "written twice" if exactly_once else "written twice were delivered once"
        print(f"  {len(defects)} records {what}, e.g. partition/offset {defects[:5]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
