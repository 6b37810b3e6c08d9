"""The ledger's committer: one background thread per ledger that commits every transaction a quiet partition
left open past its interval, and settles again each range whose transaction this process lost.

Settling a range again needs the whole batch path (plan, deliver), which lives above the ledger: it is handed in
at construction as `settle_range`, so the ledger never calls upward and knows nothing of batches.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from threading import Event, Thread

from settlement.delivery.exactly_once.ledger import Ledger

log = logging.getLogger("settlement.ledger")

SettleRange = Callable[[str, int, int], None]  # (topic, partition, upto): settle the source up to `upto`
_RECOVERY_INTERVAL_S = 1.0  # at most one recovery round this often while a cause (a broker outage) persists


class Committer:
    """Runs until the ledger closes; the thread holds only a weak reference, so a dropped delivery is collected."""

    def __init__(self, ledger: Ledger, settle_range: SettleRange, clock: Callable[[], float] = time.monotonic) -> None:
        self._ledger = ledger
        self._settle_range = settle_range
        self._clock = clock
        self._next_recovery = 0.0
        # The thread gets a weak reference and the ledger's closed event, never the ledger: its arguments live as
        # long as it runs, and an unclosed ledger must still be collected with its delivery.
        self._thread = Thread(
            target=_loop, args=(weakref.ref(self), ledger.closed, ledger.config.commit_interval_s), daemon=True
        )
        self._thread.name = "settlement-ledger-committer"
        self._thread.start()

    def round(self) -> None:
        """One round: commit what is due, then settle again what was lost."""
        self._ledger.commit_due()
        self.recover_lost()

    def recover_lost(self) -> None:
        """Settle again each range whose transaction this process lost (a batch of the partition repairs too)."""
        lost = self._ledger.lost()
        if not lost or self._clock() < self._next_recovery:
            return
        self._next_recovery = self._clock() + _RECOVERY_INTERVAL_S
        for (topic, partition), upto in lost.items():
            try:
                self._settle_range(topic, partition, upto)
            except Exception as exc:  # noqa: BLE001 - retried next round; a batch of the partition repairs too
                log.warning("recovering %s[%d] up to %d failed (retrying): %s", topic, partition, upto, exc)
                continue
            self._ledger.recovered(topic, partition, upto)


def _loop(ref: weakref.ref[Committer], closed: Event, interval: float) -> None:
    while not closed.is_set():
        committer = ref()
        if committer is None:
            return
        try:
            committer.round()
        except Exception:
            log.exception("ledger committer round failed")
        del committer
        closed.wait(max(0.005, interval / 4))
