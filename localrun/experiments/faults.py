"""Fault scenarios on the real local stack, run through the local Kafka-trigger host (instances as processes).

Each scenario streams trades through the real function while a fault happens, then counts what became of
every input record: settled, dead-lettered, lost (never written), duplicated (written twice). Each runs with
our host.json settings (`commitOnFailure: false`, `maxRetries: 2`, `maxPollIntervalMs` 30 min) and with the
extension's defaults (`commitOnFailure: true`, `maxRetries: 5`, 5 min), the function's `@app.retry` policy
in both, its back-off scaled down so minutes of retries take seconds. `python -m localrun.experiments.faults` prints the
tables in docs/testing.md ("Failure behaviour, measured").
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from typing import Any

from devstack import stack
from localrun.experiments.scenario import (
    LIVENESS,
    Fault,
    Outcome,
    Run,
    liveness_table,
    run_scenario,
    wait_for_progress,
)
from settlement.runtime import AT_LEAST_ONCE, GUARANTEES


def broker_restart(run: Run) -> None:
    """Restart the broker once a third of the stream is through."""
    wait_for_progress(run, 1 / 3)
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
    wait_for_progress(run, 1 / 3)
    time.sleep(0.25)  # the batch's records are written; its offsets are not stored yet
    run.host.kill_instance(0)
    run.host.add_instance()


def freeze_instance_past_session_timeout(run: Run) -> None:
    """SIGSTOP the only instance once a third is through, start another, which takes every partition once the
    frozen one's session times out, then thaw the zombie: its prefetched batches and open transaction meet
    partitions that another instance now holds."""
    wait_for_progress(run, 1 / 3)
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
    wait_for_progress(run, 1 / 3)
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
# Rows where the extension itself gives records up under at-least-once (skipped after its retries, or never
# skipped and stalled): the table shows them, and exactly-once's gap repair recovers what was skipped.
GIVEN_UP_BY_THE_EXTENSION = {"a batch that always fails", "... and whose retries outlast max.poll.interval.ms"}


def met(o: Outcome) -> bool:
    """Whether a row met its expectation: nothing lost and (exactly-once) nothing twice, except where the extension
    gives records up itself (GIVEN_UP_BY_THE_EXTENSION), and at-least-once under the extension's defaults, whose
    `commitOnFailure: true` commits past a failed batch: the loss that row shows, and the reason our host.json
    sets it false."""
    if o.invariant_holds or o.scenario in GIVEN_UP_BY_THE_EXTENSION:
        return True
    return o.guarantee == AT_LEAST_ONCE and o.settings == "defaults"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrun.experiments.faults", description=__doc__)
    parser.add_argument("--records", type=int, default=None, help="trades per row (default 600; 900 on 3 brokers)")
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    parser.add_argument(
        "--liveness",
        action="store_true",
        help="only the liveness rows: the last batch's transaction open when its instance dies, then no trade",
    )
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
        help="3: the cluster rows (failover, network faults) on `devstack up --brokers 3` "
        "(localrun/experiments/cluster_faults.py)",
    )
    args = parser.parse_args(argv)
    if args.brokers == 3:
        from localrun.experiments import cluster_faults

        return cluster_faults.main(
            args.only, args.guarantee, args.records or cluster_faults.RECORDS, liveness_only=args.liveness
        )
    args.records = args.records or 600
    guarantees = GUARANTEES if args.guarantee == "both" else (args.guarantee,)
    missed = 0
    with stack.running() as state:
        print(
            f"{'scenario':<58}{'guarantee':>14}{'settings':>9}{'inputs':>7}{'settled':>8}{'dead':>5}{'dup':>5}"
            f"{'lost':>5}{'calls':>6}{'failed':>7}{'skipped':>8}{'done':>5}"
        )
        if not args.only or any(args.only in name for name in LIVENESS):
            missed += liveness_table(state.bootstrap_servers, state.registry_url, guarantees, args.only)
        for name, kwargs in ({} if args.liveness else SCENARIOS).items():
            if args.only and args.only not in name:
                continue
            for guarantee in guarantees:
                for ours in (True, False):
                    o = run_scenario(
                        name, state.bootstrap_servers, state.registry_url, ours, guarantee, args.records, **kwargs
                    )
                    missed += 0 if met(o) else 1
                    print(
                        f"{o.scenario:<58}{o.guarantee:>14}{o.settings:>9}{o.inputs:>7}{o.settled:>8}"
                        f"{o.dead_lettered:>5}{o.duplicates:>5}{o.lost:>5}{o.invocations:>6}{o.failed_invocations:>7}"
                        f"{o.skipped_records:>8}{'yes' if o.finished else 'NO':>5}",
                        flush=True,
                    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
