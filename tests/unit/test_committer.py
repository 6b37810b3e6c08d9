"""The ledger's committer (settlement/delivery/exactly_once/committer.py) without a broker: it settles lost ranges
through the callable it was given, forgets a range once settled, and never keeps an unclosed ledger alive."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any

from settlement.delivery.exactly_once.committer import Committer


class FakeLedger:
    def __init__(self, lost: dict[tuple[str, int], int] | None = None) -> None:
        self.closed = threading.Event()
        self.config = type("Config", (), {"commit_interval_s": 0.02})()
        self._lost = dict(lost or {})
        self.rounds = 0

    def commit_due(self) -> None:
        self.rounds += 1

    def lost(self) -> dict[tuple[str, int], int]:
        return dict(self._lost)

    def recovered(self, topic: str, partition: int, upto: int) -> None:
        if self._lost.get((topic, partition)) == upto:
            del self._lost[(topic, partition)]


def test_a_lost_range_is_settled_through_the_given_callable_then_forgotten() -> None:
    ledger = FakeLedger({("t", 0): 10, ("t", 1): 7})
    settled: list[tuple[str, int, int]] = []

    def settle(topic: str, partition: int, upto: int) -> None:
        if partition == 1:
            raise RuntimeError("broker down")  # kept for the next round
        settled.append((topic, partition, upto))

    committer = Committer(ledger, settle, clock=lambda: 0.0)  # type: ignore[arg-type]
    ledger.closed.set()  # no background rounds: this test drives them
    committer.recover_lost()
    assert settled == [("t", 0, 10)]
    assert ledger.lost() == {("t", 1): 7}


def test_an_unclosed_ledger_is_collected_with_its_processor() -> None:
    class Processor:
        def __init__(self, ledger: Any) -> None:
            self.committer = Committer(ledger, self.settle)

        def settle(self, topic: str, partition: int, upto: int) -> None:
            pass

    ledger = FakeLedger()
    processor = Processor(ledger)
    thread, ref = processor.committer._thread, weakref.ref(ledger)
    del processor, ledger
    deadline = time.monotonic() + 2.0
    while (ref() is not None or thread.is_alive()) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
    assert ref() is None and not thread.is_alive()
