"""Command line for the local stack; every failure is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys
import time

from devstack import stack
from devstack.errors import StackError
from devstack.fetch import fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "fetch", "restart-broker"])
    args = parser.parse_args(argv)
    try:
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


def _print(state: stack.StackState) -> None:
    print(f"KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers}")
    print(f"SCHEMA_REGISTRY_URL={state.registry_url}")
    print(f"logs: {stack.home() / 'logs'}")
