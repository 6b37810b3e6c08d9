"""Function-app processes driven batch by batch (tests/integration/ledger_worker.py), the fixtures that start
them, and what a read_committed reader of a pipeline's outputs sees: shared by the exactly-once and repair
tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from localrun.experiments.kafka import header, read_to_end, settlement_of
from settlement.core.deadletter import SOURCE_OFFSET, SOURCE_PARTITION
from settlement.schemas.user_trade_pb2 import UserTrade
from tests.integration.pipeline import Pipeline
from tests.kafka_helpers import produce

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Worker:
    """One function-app process, driven batch by batch."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.ledger_worker", json.dumps(settings)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def answer(self) -> str:
        return self._line()

    def settle(self, partition: int, first: int, last: int) -> str:
        self.send(f"settle {partition} {first} {last}")
        return self.answer()

    def exit(self) -> None:
        self.send("exit")
        assert self.answer() == "ok"
        self.proc.wait(timeout=30)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)


def worker_settings() -> dict[str, str]:
    """A worker's app settings: the pipeline's (its fixture set them in the environment), exactly-once."""
    keys = [k for k in os.environ if k.startswith(("KAFKA_", "SCHEMA_", "SETTLEMENT", "USER_TRADES", "DEAD_LETTER"))]
    return {k: os.environ[k] for k in keys} | {"PYTHONPATH": ROOT, "SETTLEMENT_DELIVERY_GUARANTEE": "exactly-once"}


@pytest.fixture
def settings(pipeline: Pipeline) -> dict[str, str]:
    return worker_settings()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def trades(pipeline: Pipeline, n: int, partition: int = 0) -> None:
    ser, ctx = pipeline.serializer()
    trades = [
        (f"User_{i % 7}", ser(UserTrade(regionid="R", quantity=1 + i, symbol="ZVV", price=3, account="A"), ctx))
        for i in range(n)
    ]
    trades[5] = ("User_5", b"not protobuf")  # a dead letter is part of the ledger too
    produce(pipeline.bootstrap, pipeline.source, trades, partition=partition)


def ledger(pipeline: Pipeline, isolation: str = "read_committed") -> Counter[tuple[int, int]]:
    """How often a reader at `isolation` sees an output for each source (partition, offset)."""
    settled = [settlement_of(m) for m in read_to_end(pipeline.bootstrap, pipeline.settlements, isolation)]
    dead = read_to_end(pipeline.bootstrap, pipeline.dlq, isolation)
    seen: Counter[tuple[int, int]] = Counter((s.source_partition, s.source_offset) for s in settled)
    seen.update((int(header(m, SOURCE_PARTITION)), int(header(m, SOURCE_OFFSET))) for m in dead)
    return seen


def exactly(n: int, partition: int = 0) -> Counter[tuple[int, int]]:
    return Counter({(partition, o): 1 for o in range(n)})
