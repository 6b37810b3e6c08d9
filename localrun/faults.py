"""Fault scenarios on the real local stack, run through the local Kafka-trigger host.

Each scenario streams trades through the real function while a fault happens, then counts what became of
every input record (settled, dead-lettered, lost, duplicated). Run with `commitOnFailure: false` (ours) the
invariant inputs = settlements + dead letters holds; with the extension's default (`true`) the count of
lost records is the price of that default. `python -m localrun.faults` prints the table in the README.
"""

from __future__ import annotations

import argparse
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
from localrun.generator import GeneratorConfig, produce_trades
from localrun.host import KafkaHostOptions, LocalHost, load_binding, local_settings
from localrun.kafka import create_topics, header, high_watermarks, read_all, settlement_of
from settlement import producer, service
from settlement.deadletter import SOURCE_OFFSET, SOURCE_PARTITION

POISON_VALUES = (b"", b"{not protobuf}", b"\x00\x00", b"\x00\x7f\xff\xff\xf0\x00\x08\x01", b"\x00" * 9000)


@dataclass(frozen=True)
class Outcome:
    scenario: str
    commit_on_failure: bool
    inputs: int
    settled: int
    dead_lettered: int
    duplicates: int
    lost: int
    failed_invocations: int
    skipped_records: int

    @property
    def invariant_holds(self) -> bool:
        return self.lost == 0 and self.settled + self.dead_lettered - self.duplicates == self.inputs


@dataclass
class Run:
    """What a fault action can touch while the scenario runs."""

    host: LocalHost
    bootstrap: str
    settlements: str
    dead_letter: str
    inputs: int

    def outputs(self) -> int:
        return high_watermarks(self.bootstrap, self.settlements) + high_watermarks(self.bootstrap, self.dead_letter)


Fault = Callable[[Run], None]
Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


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


def failing_batches(failures: int) -> Wrapper:
    """The function raises on its first `failures` invocations (a bug, a timeout, a dependency blip)."""

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        remaining = {"n": failures}
        lock = threading.Lock()

        def flaky(events: list[Any]) -> Any:
            with lock:
                fail = remaining["n"] > 0
                remaining["n"] -= 1 if fail else 0
            if fail:
                raise RuntimeError("injected failure")
            return function(events)

        return flaky

    return wrap


def slow_batches(seconds: float) -> Wrapper:
    """Each invocation takes at least `seconds`, so a fault lands mid-run rather than after the end."""

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        def slow(events: list[Any]) -> Any:
            time.sleep(seconds)
            return function(events)

        return slow

    return wrap


def run_scenario(
    name: str,
    bootstrap: str,
    registry_url: str,
    commit_on_failure: bool,
    records: int = 600,
    partitions: int = 3,
    fault: Fault | None = None,
    wrap: Wrapper | None = None,
    poison: bool = False,
    oversize: bool = False,
    timeout_s: float = 120.0,
) -> Outcome:
    """Stream `records` trades (plus poison records if asked) through the function while `fault` runs."""
    import function_app

    run_id = uuid.uuid4().hex[:8]
    source, settlements, dlq = f"faults-in-{run_id}", f"faults-out-{run_id}", f"faults-dlq-{run_id}"
    # Confluent Cloud topics take records of 2 MB and more; ours too, so oversize records can arrive.
    create_topics(bootstrap, {source: partitions}, {"max.message.bytes": "4000000"})
    create_topics(bootstrap, {settlements: 1, dlq: 1})
    settings = local_settings()
    settings.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SCHEMA_REGISTRY_URL": registry_url,
            "USER_TRADES_TOPIC": source,
            "SETTLEMENTS_TOPIC": settlements,
            "DEAD_LETTER_TOPIC": dlq,
            "KAFKA_CONSUMER_GROUP": f"faults-{run_id}",
            "SETTLEMENT_DELIVERY_TIMEOUT_SECONDS": "15",
            "SCHEMA_REGISTRY_CONFIG": '{"timeout": 1, "max.retries": 0}',
        }
    )
    os.environ.update(settings)
    service.reset()
    producer.reset_shared_producer()

    inputs = produce_trades(bootstrap, registry_url, source, records, GeneratorConfig(seed=11))
    if poison:
        raw = Producer({"bootstrap.servers": bootstrap})
        for i, value in enumerate(POISON_VALUES * 3):
            raw.produce(source, key=f"User_{i}", value=value, partition=i % partitions)
        raw.flush(30)
        inputs += len(POISON_VALUES) * 3
    if oversize:
        # A 1.5 MB value and a 1 MB key: too large to write whole as a settlement or dead letter.
        big = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4_000_000})
        framed = b"\x00\x00\x00\x00\x01\x00"
        for i in range(partitions):
            big.produce(source, key=f"User_{i}", value=framed + b"\x01" * 1_500_000, partition=i)
            big.produce(source, key=b"U" * 1_000_000, value=framed, partition=i)
        big.flush(30)
        inputs += 2 * partitions

    binding = load_binding(function_app.app, settings)
    if wrap is not None:
        binding = replace(binding, user_function=wrap(binding.user_function))
    options = replace(KafkaHostOptions.from_host_json(), commit_on_failure=commit_on_failure, max_batch_size=50)
    host = LocalHost(binding, options, partitions, retry_scale=0.05)
    run = Run(host, bootstrap, settlements, dlq, inputs)
    fault_thread = threading.Thread(target=fault, args=(run,), daemon=True) if fault else None
    if fault_thread:
        fault_thread.start()
    host.start(1)
    try:
        host.run_until(
            lambda: host.lag() == 0 and (fault_thread is None or not fault_thread.is_alive()),
            timeout_s,
            autoscale=False,
            tick_s=0.2,
        )
    finally:
        host.stop()
        if fault_thread:
            fault_thread.join(timeout=60)
    outcome = _count(name, run, commit_on_failure)
    producer.reset_shared_producer(timeout_s=5)
    service.reset()
    return outcome


def _count(name: str, run: Run, commit_on_failure: bool) -> Outcome:
    settled_msgs = read_all(run.bootstrap, run.settlements, high_watermarks(run.bootstrap, run.settlements))
    dead_msgs = read_all(run.bootstrap, run.dead_letter, high_watermarks(run.bootstrap, run.dead_letter))
    covered = [(s.source_partition, s.source_offset) for s in map(settlement_of, settled_msgs)]
    covered += [(int(header(m, SOURCE_PARTITION)), int(header(m, SOURCE_OFFSET))) for m in dead_msgs]
    unique = len(set(covered))
    return Outcome(
        name,
        commit_on_failure,
        run.inputs,
        len(settled_msgs),
        len(dead_msgs),
        len(covered) - unique,
        run.inputs - unique,
        run.host.stats.failures,
        run.host.stats.skipped_records,
    )


SCENARIOS: dict[str, dict[str, Any]] = {
    "function raises on 3 batches": {"wrap": failing_batches(3)},
    "broker restart mid-run": {"fault": broker_restart, "wrap": slow_batches(0.25)},
    "registry unavailable 3 s, then back": {"fault": registry_outage(3.0)},
    "every poison kind in the stream": {"poison": True},
    "1.5 MB values and 1 MB keys in the stream": {"oversize": True},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrun.faults", description=__doc__)
    parser.add_argument("--records", type=int, default=600)
    args = parser.parse_args(argv)
    with stack.running() as state:
        print(
            f"{'scenario':<38}{'commitOnFailure':>16}{'inputs':>8}{'settled':>9}{'dead':>6}{'dup':>5}"
            f"{'lost':>6}{'failed calls':>14}"
        )
        for name, kwargs in SCENARIOS.items():
            for commit in (False, True):
                o = run_scenario(name, state.bootstrap_servers, state.registry_url, commit, args.records, **kwargs)
                print(
                    f"{o.scenario:<38}{str(o.commit_on_failure).lower():>16}{o.inputs:>8}{o.settled:>9}"
                    f"{o.dead_lettered:>6}{o.duplicates:>5}{o.lost:>6}{o.failed_invocations:>14}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
