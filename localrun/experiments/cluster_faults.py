"""Fault rows on the 3-node cluster: leader, controller and coordinator failover, and network faults.

`python -m localrun.experiments.faults --brokers 3` runs them. Why a table of its own: on one broker with
replication 1 a leader never changes, so acks=all, idempotence and transactions were never exercised by a
failover, and no fault ever sat between the function and Kafka or the registry.

Every row streams trades through the real function (the local host, instances as processes) on topics with
replication factor 3 and min.insync.replicas 2, while one fault happens, then counts what a read_committed
reader sees: settled, dead-lettered, duplicates, lost. It also reports the **time to recover**: from the moment
the fault starts until the outputs have grown by one batch (50 records) past their count at that moment, the
pipeline writing again. A node killed by a row is started again by the row, which then waits until every
partition's ISR is full (3) again, so the next row starts from a healthy cluster; the proxy is reset likewise.

The function talks to Kafka and the registry through toxiproxy (the brokers advertise the proxied
addresses); the harness looks, creates and counts through the unproxied INTERNAL listeners.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from devstack import cluster
from devstack.cluster import ClusterState
from devstack.errors import StackError
from localrun.experiments.scenario import LIVENESS, Fault, Outcome, Run, liveness_line, liveness_met, run_scenario
from settlement.core import transactional_id
from settlement.runtime import AT_LEAST_ONCE, EXACTLY_ONCE, GUARANTEES

BATCH = 50  # the rows' maxBatchSize: "a batch more written" is the recovery mark
RECORDS = 900
PARTITIONS = 3
REQUEST_TIMEOUT_S = 15  # SETTLEMENT_DELIVERY_TIMEOUT_SECONDS 15 in the rows: the producer's request timeout too
# The function's @app.retry back-off (5 s doubling to 60 s, 4 retries) scaled by 0.1, not the one-broker table's
# 0.01: the extension's retry budget (3 executions of 5 invocations) is then about 25 s, longer than every fault
# here, as the unscaled budget (minutes) is on Azure. At 0.01 it is about 2.5 s, and an 8 s burst of registry
# resets outlasted it: at-least-once then lost the batches the extension gave up (README, cluster table).
RETRY_SCALE = 0.1
SOURCE_LEADER_KILLED = "the leader of a user_trades partition killed (SIGKILL) mid-batch"
LEADER_BLACKHOLED_PAST_TIMEOUT = (
    f"settlement partition 0's leader blackholed 25 s (request timeout {REQUEST_TIMEOUT_S} s)"
)


class Progress:
    """Watches the outputs from the moment a fault starts until a batch more was written (the recovery time)."""

    def __init__(self, run: Run, baseline: int | None = None) -> None:
        self.run = run
        self.started = time.monotonic()
        self.baseline = _outputs(run) if baseline is None else baseline
        self.recovered_at: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        target = min(self.baseline + BATCH, self.run.inputs)
        deadline = self.started + 300
        while time.monotonic() < deadline:
            if _outputs(self.run) >= target:
                self.recovered_at = time.monotonic()
                return
            time.sleep(0.1)

    def wait(self, timeout_s: float = 120.0) -> float | None:
        """Seconds from the fault to recovery (None if the pipeline wrote nothing more within the timeout)."""
        self._thread.join(timeout_s)
        self.run.recovery_s = None if self.recovered_at is None else round(self.recovered_at - self.started, 1)
        return self.run.recovery_s


def _outputs(run: Run) -> int:
    """Records written so far (settlements + dead letters, high watermarks read directly, each query bounded
    by 1 s so a dead leader costs the measurement a second, not librdkafka's 10 s default used elsewhere);
    -1 while a partition has no leader to answer (a node just killed)."""
    consumer = Consumer({"bootstrap.servers": run.bootstrap, "group.id": "watermarks", "log_level": 0})
    try:
        total = 0
        for topic in (run.settlements, run.dead_letter):
            partitions = consumer.list_topics(topic, timeout=2).topics[topic].partitions
            total += sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=1)[1] for p in partitions)
        return total
    except Exception:  # noqa: BLE001 - KafkaException (timed out, leader not available): ask again later
        return -1
    finally:
        consumer.close()


def _wait_for_progress(run: Run, share: float, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _outputs(run) < run.inputs * share and time.monotonic() < deadline:
        time.sleep(0.05)


def _kill_and_restart(state: ClusterState, run: Run, choose: Callable[[Run], int]) -> None:
    """SIGKILL the node `choose` names once a third is through, measure recovery, start it again, and wait
    until every ISR is full."""
    _wait_for_progress(run, 1 / 3)
    victim = choose(run)
    baseline = _outputs(run)
    cluster.kill_node(state, victim)
    progress = Progress(run, baseline)
    progress.wait()
    # Leave the node down a little past the recovery (the pipeline runs on two nodes), then bring it back.
    time.sleep(2)
    restarted = time.monotonic()
    cluster.start_node(state, victim)
    cluster.wait_isr_full(state)
    run.isr_s = round(time.monotonic() - restarted, 1)


def kill_source_leader(state: ClusterState) -> Fault:
    """The leader of user_trades partition 0 SIGKILLed while a batch is in flight."""
    return lambda run: _kill_and_restart(state, run, lambda r: cluster.partition_leader(state, r.source, 0))


def kill_settlement_leader(state: ClusterState) -> Fault:
    """The leader of settlement partition 0 SIGKILLed while the function produces to it."""
    return lambda run: _kill_and_restart(state, run, lambda r: cluster.partition_leader(state, r.settlements, 0))


def kill_active_controller(state: ClusterState) -> Fault:
    """The active controller (the KRaft quorum leader, asked of the quorum) SIGKILLed; combined nodes, so a
    broker goes with it."""
    return lambda run: _kill_and_restart(state, run, lambda _r: cluster.active_controller(state))


def kill_transaction_coordinator(state: ClusterState) -> Fault:
    """The broker coordinating partition 0's transactional id SIGKILLed while its transactions commit (one
    every 300 ms, so a commit is in flight or about to be)."""

    def coordinator(run: Run) -> int:
        # The partition's transactional id exists once its first batch took it; ask until the cluster knows it.
        deadline = time.monotonic() + 30
        while True:
            try:
                return cluster.transaction_coordinator(state, transactional_id(run.group, run.source, 0))
            except StackError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    return lambda run: _kill_and_restart(state, run, coordinator)


def network_fault(
    state: ClusterState,
    kind: str,
    attributes: dict[str, int],
    seconds: float,
    target: str = "brokers",
    both_ways: bool = True,
    at_share: float = 1 / 3,
) -> Fault:
    """A toxic on the function's links for `seconds`: `target` is "brokers" (every node's proxy), "leader"
    (the proxy of settlement partition 0's leader) or "registry". Broker faults start once `at_share` of the
    stream is through; registry faults from the start (the function looks schemas up once per process, at
    its first batch)."""

    def fault(run: Run) -> None:
        if target == "registry":
            proxies = [cluster.REGISTRY_PROXY]
        else:
            _wait_for_progress(run, at_share)
            if target == "leader":
                proxies = [cluster.proxy_name(cluster.partition_leader(state, run.settlements, 0))]
            else:
                proxies = [cluster.proxy_name(n.node_id) for n in state.nodes]
        api = state.proxy()
        baseline = _outputs(run)
        with api.toxics(proxies, kind, attributes, both_ways):
            progress = Progress(run, baseline)
            time.sleep(seconds)
        progress.wait()

    return fault


def scenarios(state: ClusterState) -> dict[str, dict[str, Any]]:
    """The rows, by name: each names its fault and the function's pace (a slow batch keeps one in flight)."""
    slow = "slow:0.2,slow-after:0.2"
    return {
        SOURCE_LEADER_KILLED: {
            "fault": kill_source_leader(state),
            "function_fault": slow,
        },
        "the leader of a settlement partition killed mid-produce": {
            "fault": kill_settlement_leader(state),
            "function_fault": slow,
        },
        "the active controller killed": {"fault": kill_active_controller(state), "function_fault": slow},
        "the transaction coordinator's broker killed mid-commit": {
            "fault": kill_transaction_coordinator(state),
            "function_fault": slow,
            "records": 1500,  # the coordinator is asked for after the partition's first batch: keep some stream
            "guarantees": (EXACTLY_ONCE,),
        },
        "200 ms latency (+-100 ms jitter) on every broker link, 10 s": {
            "fault": network_fault(state, "latency", {"latency": 200, "jitter": 100}, 10),
            "function_fault": slow,
        },
        "bandwidth capped at 4 KB/s on every broker link, 10 s": {
            "fault": network_fault(state, "bandwidth", {"rate": 4}, 10),
            "function_fault": slow,
        },
        "connections reset (reset_peer after 500 ms) on every broker link, 6 s": {
            "fault": network_fault(state, "reset_peer", {"timeout": 500}, 6, both_ways=False),
            "function_fault": slow,
        },
        "settlement partition 0's leader blackholed 10 s": {
            "fault": network_fault(state, "timeout", {"timeout": 0}, 10, target="leader"),
            "function_fault": slow,
        },
        LEADER_BLACKHOLED_PAST_TIMEOUT: {
            "fault": network_fault(state, "timeout", {"timeout": 0}, 25, target="leader"),
            "function_fault": slow,
            "timeout_s": 180.0,
        },
        "registry 200 ms latency (+-100 ms jitter), 10 s": {
            "fault": network_fault(state, "latency", {"latency": 200, "jitter": 100}, 10, target="registry"),
        },
        "registry latency spikes of 1.5 s (+-500 ms, past the 1 s client timeout), 8 s": {
            "fault": network_fault(state, "latency", {"latency": 1500, "jitter": 500}, 8, target="registry"),
        },
        "registry connections reset (reset_peer), 8 s": {
            "fault": network_fault(state, "reset_peer", {"timeout": 0}, 8, target="registry", both_ways=False),
        },
        "registry blackholed 10 s": {
            "fault": network_fault(state, "timeout", {"timeout": 0}, 10, target="registry"),
        },
        # The liveness rows (localrun/experiments/scenario.py) on replicated topics, through the proxies:
        # exactly-once only, where a transaction can be left open.
        **{name: {**row, "guarantees": (EXACTLY_ONCE,)} for name, row in LIVENESS.items()},
    }


def run_row(state: ClusterState, name: str, guarantee: str, records: int = RECORDS, **row: Any) -> Outcome:
    """One row on the cluster, with our host.json; the cluster is healthy again when it returns."""
    row = {k: v for k, v in row.items() if k != "guarantees"}
    records = row.pop("records", records)
    try:
        cluster_row: dict[str, Any] = {
            "replication": 3,
            "settlement_partitions": PARTITIONS,
            "control_bootstrap": state.direct_bootstrap,
            "control_registry_url": state.direct_registry_url,
            "retry_scale": RETRY_SCALE,
            **row,
        }
        return run_scenario(
            name, state.bootstrap_servers, state.registry_url, True, guarantee, records, PARTITIONS, **cluster_row
        )
    finally:
        heal(state)


def heal(state: ClusterState) -> None:
    """Every toxic off, every node running, every ISR full: what the next row starts from."""
    state.proxy().reset()
    for node in state.nodes:
        if not cluster.stack._alive(node.pid):
            cluster.start_node(state, node.node_id)
    cluster.wait_isr_full(state)


HEADER = (
    f"{'scenario':<82}{'guarantee':>14}{'inputs':>7}{'settled':>8}{'dead':>5}{'dup':>5}{'lost':>5}"
    f"{'recover s':>10}{'isr s':>7}{'done':>5}"
)


def line(o: Outcome) -> str:
    """One printed row of the table."""
    rec = "-" if o.recovery_s is None else f"{o.recovery_s:.1f}"
    isr = "-" if o.isr_s is None else f"{o.isr_s:.1f}"
    return (
        f"{o.scenario:<82}{o.guarantee:>14}{o.inputs:>7}{o.settled:>8}{o.dead_lettered:>5}{o.duplicates:>5}"
        f"{o.lost:>5}{rec:>10}{isr:>7}{'yes' if o.finished else 'NO':>5}"
    )


def expectation_met(o: Outcome) -> bool:
    """Every row: nothing lost, every input accounted for, finished; under exactly-once no duplicate; and the
    pipeline wrote again after the fault."""
    return o.invariant_holds and o.finished and o.recovery_s is not None


def memory_line(memory: dict[str, float]) -> str:
    """Resident memory of the cluster's processes, total first."""
    return f"{sum(memory.values()):.0f} MiB ({', '.join(f'{k} {v:.0f}' for k, v in memory.items())})"


def main(only: str | None, guarantee: str, records: int = RECORDS, liveness_only: bool = False) -> int:
    """Run the rows (those whose name contains `only`), print the table, 1 if any row missed."""
    guarantees = GUARANTEES if guarantee == "both" else (guarantee,)
    missed = 0
    started = time.monotonic()
    with cluster.running() as state:
        print(f"cluster memory at start: {memory_line(cluster.memory_mib(state))}", flush=True)
        print(HEADER, flush=True)
        for name, row in scenarios(state).items():
            if (only and only not in name) or (liveness_only and name not in LIVENESS):
                continue
            for g in guarantees:
                if g not in row.get("guarantees", (EXACTLY_ONCE, AT_LEAST_ONCE)):
                    continue
                outcome = run_row(state, name, g, **{"records": records, **row})
                ok = liveness_met(outcome) if name in LIVENESS else expectation_met(outcome)
                missed += 0 if ok else 1
                shown = liveness_line(outcome) if name in LIVENESS else line(outcome)
                print(shown + ("" if ok else "  <- MISSED"), flush=True)
        print(f"cluster memory at end: {memory_line(cluster.memory_mib(state))}", flush=True)
    print(f"table took {time.monotonic() - started:.0f} s")
    return 1 if missed else 0
