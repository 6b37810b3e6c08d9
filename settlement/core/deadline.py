"""A deadline as a value: the point on the monotonic clock by which a batch's work must end, and the timeouts
derived from it. One batch's deadline is set once (the processor) and handed down; every blocking call below takes
its timeout from it here, so "what is left, capped, never zero" is decided once rather than per call site."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

MIN_TIMEOUT_S = 0.1  # a client call given 0 s does not try at all: give it this much even past the deadline


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() seconds

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        """Seconds until the deadline (negative once passed)."""
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return time.monotonic() > self.at

    def timeout(self, cap_s: float = math.inf) -> float:
        """A blocking call's timeout: what is left, at most `cap_s`, at least `MIN_TIMEOUT_S`."""
        return max(MIN_TIMEOUT_S, min(cap_s, self.left()))


def timeout(deadline: Deadline | None, cap_s: float) -> float:
    """`deadline.timeout(cap_s)`, or `cap_s` when the caller has no deadline (the committer's background rounds)."""
    return cap_s if deadline is None else deadline.timeout(cap_s)
