"""The deadline value (settlement/core/deadline.py): the timeouts every blocking call below a batch derives from it."""

from __future__ import annotations

import math
import time

import pytest

from settlement.core.deadline import MIN_TIMEOUT_S, Deadline, timeout


@pytest.mark.parametrize(
    ("left_s", "cap_s", "expected"),
    [
        (10.0, math.inf, 10.0),  # what is left
        (10.0, 3.0, 3.0),  # capped by the call's own bound
        (-5.0, 3.0, MIN_TIMEOUT_S),  # passed: a call still gets a moment, never 0 (which would not try)
        (0.01, 3.0, MIN_TIMEOUT_S),
    ],
)
def test_timeout(left_s: float, cap_s: float, expected: float) -> None:
    assert Deadline(time.monotonic() + left_s).timeout(cap_s) == pytest.approx(expected, abs=0.05)


def test_no_deadline_leaves_the_cap() -> None:
    assert timeout(None, 30.0) == 30.0
    assert timeout(Deadline.after(5.0), 30.0) == pytest.approx(5.0, abs=0.05)


def test_passed() -> None:
    assert Deadline(time.monotonic() - 1).passed()
    assert not Deadline.after(60).passed()
    assert Deadline(time.monotonic() - 1).left() < 0
