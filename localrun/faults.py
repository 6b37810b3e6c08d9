"""Fault scenarios on the real local stack, run through the local Kafka-trigger host (instances as processes).

Each scenario streams trades through the real function while a fault happens, then counts what became of
every input record: settled, dead-lettered, lost (never written), duplicated (written twice). Each runs with
our host.json settings (`commitOnFailure: false`, `maxRetries: 2`, `maxPollIntervalMs` 30 min) and with the
extension's defaults (`commitOnFailure: true`, `maxRetries: 5`, 5 min), the function's `@app.retry` policy
in both, its back-off scaled down so minutes of retries take seconds. `python -m localrun.faults` prints the
tables in docs/testing.md ("Failure behaviour, measured").
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import Producer

from devstack import stack
from localrun.accounting import coverage
from localrun.generator import GeneratorConfig, produce_trades
from localrun.host import KafkaHostOptions, LocalHost, load_binding, run_settings
from localrun.kafka import create_topics, high_watermarks, read_to_end, settlement_of
from settlement.config import EXACTLY_ONCE, GUARANTEES

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

    @property
    def invariant_holds(self) -> bool:
        """No loss; and under exactly-once, no duplicate either (seen by a read_committed reader)."""
        exact = self.duplicates == 0 or self.guarantee != EXACTLY_ONCE
        return exact and self.lost == 0 and self.settled + self.dead_lettered - self.duplicates == self.inputs


@dataclass
class Run:
    """What a fault action can touch while the scenario runs."""

    host: LocalHost
    bootstrap: str
    settlements: str
    dead_letter: str
    inputs: int
    source: str = ""
    group: str = ""
    recovery_s: float | None = None  # set by a cluster fault: see localrun/cluster_faults.py
    isr_s: float | None = None
    not_drained: str = ""  # why the run did not drain in time, when it did not

    def outputs(self) -> int:
        return high_watermarks(self.bootstrap, self.settlements) + high_watermarks(self.bootstrap, self.dead_letter)


Fault = Callable[[Run], None]


def _wait_for_progress(run: Run, share: float, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while run.outputs() < run.inputs * share and time.monotonic() < deadline:
        time.sleep(0.05)


def broker_restart(run: Run) -> None:
    """Restart the broker once a third of the stream is through."""
    _wait_for_progress(run, 1 / 3)
    state = stack.load_state()
    assert state is not None, "broker restart needs the local stack"
    stack.restart_broker(state)


def registry_outage(seconds: float) -> Fault:
    """Freeze the registry (SIGSTOP: connections hang, as in a network partition) from the start, then thaw."""

    def fault(run: Run) -> None:
        state = stack.load_state()
        assert state is not None, "a registry outage needs the local stack"
        os.killpg(state.registry_pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.killpg(state.registry_pid, signal.SIGCONT)

    return fault


def kill_instance_mid_batch(run: Run) -> None:
    """SIGKILL the only instance while a (slow) batch is in flight, once a third is through; start another."""
    _wait_for_progress(run, 1 / 3)
    time.sleep(0.25)  # the batch's records are written; its offsets are not stored yet
    run.host.kill_instance(0)
    run.host.add_instance()


def freeze_instance_past_session_timeout(run: Run) -> None:
    """SIGSTOP the only instance once a third is through, start another, which takes every partition once the
    frozen one's session times out, then thaw the zombie: its prefetched batches and open transaction meet
    partitions that another instance now holds."""
    _wait_for_progress(run, 1 / 3)
    pid = run.host.instances[0].pid
    assert pid is not None, "freezing needs process instances"
    os.kill(pid, signal.SIGSTOP)
    try:
        run.host.add_instance()
        time.sleep(EVICTABLE["session.timeout.ms"] / 1000 + 3)
    finally:
        os.kill(pid, signal.SIGCONT)


def scale_out_mid_run(run: Run) -> None:
    """A second instance joins once a third is through: the eager assignor revokes every partition."""
    _wait_for_progress(run, 1 / 3)
    run.host.add_instance()


# Poll-interval scenario: the consumer may go 7 s without polling (librdkafka needs session.timeout.ms below
# it); a batch that always fails takes 1 s an invocation, so its retries outlast that.
EVICTABLE = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}

SCENARIOS: dict[str, dict[str, Any]] = {
    # nested retries: 6 failing invocations outlast one execution (@app.retry: 1 + 4 retries)
    "function raises on 6 invocations": {"function_fault": "fail-first:6"},
    # the batch's records are written, then its invocation fails (a lost acknowledgement, a timeout): retried
    "a batch retried after its records were written": {"function_fault": "fail-after-first:2"},
    "broker restart mid-run": {"fault": broker_restart, "function_fault": "slow:0.25"},
    "registry unavailable 3 s, then back": {"fault": registry_outage(3.0)},
    "every poison kind in the stream": {"poison": True},
    "1.5 MB values and 1 MB keys in the stream": {"oversize": True},
    "a batch that always fails": {"function_fault": "fail-offset:0:60"},
    "... and whose retries outlast max.poll.interval.ms": {
        "function_fault": "slow:1,fail-offset:0:60",
        "max_poll_interval_ms": 7000,
        "consumer_conf": EVICTABLE,
        "timeout_s": 45.0,
    },
    # the kill lands after a batch was written, before its offsets were stored: at-least-once shows
    "an instance killed mid-batch": {"fault": kill_instance_mid_batch, "function_fault": "slow-after:0.5"},
    "scale-out (eager rebalance) mid-run": {"fault": scale_out_mid_run, "function_fault": "slow-after:0.2"},
    "an instance frozen past its session timeout, then thawed": {
        "fault": freeze_instance_past_session_timeout,
        "function_fault": "slow-after:0.2",
        "consumer_conf": EVICTABLE,
    },
}
DEFAULTS = KafkaHostOptions()  # the extension's own defaults
# Rows where the extension itself gives records up under at-least-once (skipped after its retries, or never
# skipped and stalled): the table shows them, and exactly-once's gap repair recovers what was skipped.
GIVEN_UP_BY_THE_EXTENSION = {"a batch that always fails", "... and whose retries outlast max.poll.interval.ms"}


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
) -> Outcome:
    """Stream `records` trades (plus poison records if asked) through the function while `fault` runs.

    On the 3-node cluster the function gets the proxied `bootstrap` and `registry_url`, while the harness
    (topics, the generator, progress, the final count) uses the unproxied `control_*` addresses: a network
    fault is then the function's alone, and the count never depends on the fault being over."""
    import function_app

    control = control_bootstrap or bootstrap
    run_id = uuid.uuid4().hex[:8]
    source, settlements, dlq = f"faults-in-{run_id}", f"faults-out-{run_id}", f"faults-dlq-{run_id}"
    isr = {"min.insync.replicas": "2"} if replication >= 3 else {}
    # Confluent Cloud topics take records of 2 MB and more; ours too, so oversize records can arrive.
    create_topics(control, {source: partitions}, {"max.message.bytes": "4000000", **isr}, replication)
    create_topics(control, {settlements: settlement_partitions, dlq: 1}, isr, replication)
    settings = run_settings(
        bootstrap,
        registry_url,
        source,
        settlements,
        dlq,
        f"faults-{run_id}",
        SETTLEMENT_DELIVERY_TIMEOUT_SECONDS="15",
        SETTLEMENT_DELIVERY_GUARANTEE=guarantee,
        SCHEMA_REGISTRY_CONFIG='{"timeout": 1, "max.retries": 0}',
    )
    saved_environ = dict(os.environ)
    os.environ.update(settings)  # the function imported here reads them, as on Azure; restored at the end

    inputs = produce_trades(control, control_registry_url or registry_url, source, records, GeneratorConfig(seed=11))
    if poison:
        raw = Producer({"bootstrap.servers": control})
        for i, value in enumerate(POISON_VALUES * 3):
            raw.produce(source, key=f"User_{i}", value=value, partition=i % partitions)
        raw.flush(30)
        inputs += len(POISON_VALUES) * 3
    if oversize:
        # A 1.5 MB value and a 1 MB key: too large to write whole as a settlement or dead letter.
        big = Producer({"bootstrap.servers": control, "message.max.bytes": 4_000_000})
        framed = b"\x00\x00\x00\x00\x01\x00"
        for i in range(partitions):
            big.produce(source, key=f"User_{i}", value=framed + b"\x01" * 1_500_000, partition=i)
            big.produce(source, key=b"U" * 1_000_000, value=framed, partition=i)
        big.flush(30)
        inputs += 2 * partitions

    binding = load_binding(function_app.app, settings)
    base = KafkaHostOptions.from_host_json() if ours else DEFAULTS
    options = replace(base, max_batch_size=50, max_poll_interval_ms=max_poll_interval_ms or base.max_poll_interval_ms)
    host = LocalHost(
        binding,
        options,
        partitions,
        consumer_conf=consumer_conf,
        retry_scale=retry_scale,
        app="function_app:app",
        settings=settings,
        fault=function_fault,
    )
    run = Run(host, control, settlements, dlq, inputs, source, f"faults-{run_id}")
    fault_thread = threading.Thread(target=fault, args=(run,), daemon=True) if fault else None
    host.start(1)
    if fault_thread:
        fault_thread.start()
    try:
        finished = host.run_until(
            lambda: host.drained(guarantee == EXACTLY_ONCE) and (fault_thread is None or not fault_thread.is_alive()),
            timeout_s,
            autoscale=False,
            tick_s=0.2,
        )
        if not finished:
            # Why the run did not drain: the trigger group's lag, the ledger's, and whether the fault still runs.
            alive = fault_thread is not None and fault_thread.is_alive()
            lags = (host.lag(), host.lag(settled=True) if guarantee == EXACTLY_ONCE else None)
            log.warning("%s: not drained at %.0f s: group lag %s, ledger lag %s, fault running %s",
                        name, timeout_s, *lags, alive)  # fmt: skip
            run.not_drained = f"lag {lags[0]}, ledger lag {lags[1]}, fault running {alive}"
    finally:
        host.stop()
        if fault_thread:
            fault_thread.join(timeout=60)
        os.environ.clear()
        os.environ.update(saved_environ)
    return _count(name, guarantee, run, "ours" if ours else "defaults", finished)


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
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrun.faults", description=__doc__)
    parser.add_argument("--records", type=int, default=None, help="trades per row (default 600; 900 on 3 brokers)")
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    parser.add_argument(
        "--guarantee",
        choices=[*GUARANTEES, "both"],
        default="both",
        help="SETTLEMENT_DELIVERY_GUARANTEE (default both)",
    )
    parser.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        default=1,
        help="3: the cluster rows (failover, network faults) on `devstack up --brokers 3` (localrun/cluster_faults.py)",
    )
    args = parser.parse_args(argv)
    if args.brokers == 3:
        from localrun import cluster_faults

        return cluster_faults.main(args.only, args.guarantee, args.records or cluster_faults.RECORDS)
    args.records = args.records or 600
    guarantees = GUARANTEES if args.guarantee == "both" else (args.guarantee,)
    missed = 0
    with stack.running() as state:
        print(
            f"{'scenario':<58}{'guarantee':>14}{'settings':>9}{'inputs':>7}{'settled':>8}{'dead':>5}{'dup':>5}"
            f"{'lost':>5}{'calls':>6}{'failed':>7}{'skipped':>8}{'done':>5}"
        )
        for name, kwargs in SCENARIOS.items():
            if args.only and args.only not in name:
                continue
            for guarantee in guarantees:
                for ours in (True, False):
                    o = run_scenario(
                        name, state.bootstrap_servers, state.registry_url, ours, guarantee, args.records, **kwargs
                    )
                    missed += 0 if o.invariant_holds or name in GIVEN_UP_BY_THE_EXTENSION else 1
                    print(
                        f"{o.scenario:<58}{o.guarantee:>14}{o.settings:>9}{o.inputs:>7}{o.settled:>8}"
                        f"{o.dead_lettered:>5}{o.duplicates:>5}{o.lost:>5}{o.invocations:>6}{o.failed_invocations:>7}"
                        f"{o.skipped_records:>8}{'yes' if o.finished else 'NO':>5}",
                        flush=True,
                    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
