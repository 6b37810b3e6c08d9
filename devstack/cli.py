"""Command line for the local stack; every failure is one line on stderr and exit code 2.

`local-settings` writes local.settings.json for `func start` against the running stack (its ports, the
function's topics created); it never replaces an existing file without --force.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from devstack import cluster, local_settings, stack
from devstack.cli_support import HelpFormatter
from devstack.errors import StackError
from devstack.fetch import fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down", "status", "fetch", "restart-broker", "local-settings"])
    parser.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        default=1,
        help="1: one combined node, replication 1; 3: a KRaft cluster of three behind toxiproxy",
    )
    group = parser.add_argument_group("local-settings")
    group.add_argument("--output", type=Path, default=local_settings.OUTPUT, help="the file to write")
    group.add_argument("--force", action="store_true", help="replace an existing file (its values are not kept)")
    group.add_argument(
        "--partitions",
        type=int,
        default=local_settings.DEFAULT_PARTITIONS,
        help="partitions of the user_trades and trade-settlements topics when created (the dead-letter topic: 1)",
    )
    args = parser.parse_args(argv)
    if args.partitions < 1:
        parser.error("--partitions must be at least 1")
    try:
        if args.command == "local-settings":
            return _local_settings(args.output, args.force, args.partitions)
        if args.brokers == 3:
            return _run_cluster(args.command)
        return _run(args.command)
    except StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 2


def _run(command: str) -> int:
    if command == "fetch":
        started = time.monotonic()
        artifacts = fetch()
        print(
            f"kafka {artifacts.kafka_version} and apicurio {artifacts.registry_version} ready "
            f"in {time.monotonic() - started:.1f}s"
        )
        return 0
    if command == "up":
        started = time.monotonic()
        state, created = stack.up()
        verb = "started" if created else "already running"
        print(f"stack {verb} in {time.monotonic() - started:.1f}s")
        _print(state)
        return 0
    if command == "down":
        print("stack stopped" if stack.down() else "stack was not running")
        return 0
    recorded = stack.load_state()
    if recorded is None:
        print("stack is not running")
        return 1
    state = recorded
    if command == "restart-broker":
        stack.restart_broker(state)
        print("broker restarted")
        return 0
    running = stack.is_running(state)
    print("stack is running" if running else "stack is recorded but not answering (run `down` then `up`)")
    _print(state)
    return 0 if running else 1


def _local_settings(output: Path, force: bool, partitions: int) -> int:
    recorded = stack.load_state()
    if recorded is None or not stack.is_running(recorded):
        raise StackError("the local stack is not running: start it with `python -m devstack up`, then run this again")
    written = local_settings.write_local_settings(
        recorded.bootstrap_servers, recorded.registry_url, output, force=force, partitions=partitions
    )
    for line in local_settings.summary(written, recorded.bootstrap_servers, recorded.registry_url):
        print(line)
    return 0


def _print(state: stack.StackState) -> None:
    print(f"KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers}")
    print(f"SCHEMA_REGISTRY_URL={state.registry_url}")
    print(f"OAUTHBEARER listener (signed tokens verified): {state.oauth_bootstrap_servers}")
    print(f"token issuer: {state.issuer_url}")
    print(f"logs: {stack.home() / 'logs'}")


def _run_cluster(command: str) -> int:
    """The same commands for the three-node cluster (its state in .stack/cluster/)."""
    if command == "up":
        started = time.monotonic()
        state, created = cluster.up()
        print(f"cluster {'started' if created else 'already running'} in {time.monotonic() - started:.1f}s")
        _print_cluster(state)
        return 0
    if command == "down":
        print("cluster stopped" if cluster.down() else "cluster was not running")
        return 0
    if command == "fetch":
        fetch()
        cluster.fetch_tools()
        cluster.toxiproxy.ensure_built()
        print("kafka, kafka-tools, apicurio and toxiproxy ready")
        return 0
    recorded = cluster.load_state()
    if recorded is None:
        print("cluster is not running")
        return 1
    if command == "restart-broker":
        raise StackError("restart-broker is for the one-broker stack; the fault rows restart cluster nodes")
    running = cluster.is_running(recorded)
    print("cluster is running" if running else "cluster is recorded but not answering (run `down` then `up`)")
    _print_cluster(recorded)
    if running:
        print(f"active controller: node {cluster.active_controller(recorded)}")
        short = cluster.under_replicated(recorded)
        print(f"under-replicated partitions: {len(short)}")
        memory = cluster.memory_mib(recorded)
        print("resident memory (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
        print(f"total {sum(memory.values()):.0f} MiB")
    return 0 if running else 1


def _print_cluster(state: cluster.ClusterState) -> None:
    print(f"KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers}")
    print(f"SCHEMA_REGISTRY_URL={state.registry_url}")
    print(f"direct (unproxied) bootstrap: {state.direct_bootstrap}, registry {state.direct_registry_url}")
    print(f"toxiproxy API: http://{cluster.HOST}:{state.toxiproxy_port}")
