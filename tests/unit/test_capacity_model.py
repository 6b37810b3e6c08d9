"""The capacity model reproduces the reported scaling figure and the scale controller's rules."""

from __future__ import annotations

from itertools import pairwise

import pytest

from scripts.capacity_model import Params, drain_time, instance_rate, simulate, time_to_instances


def test_reproduces_the_reported_figure_100_instances_after_about_50_minutes() -> None:
    p = Params(partitions=100, records=5_000_000, batch_size=1, record_s=5.0, lag_threshold=1000, interval_s=30)
    points = simulate(p, horizon_s=2 * 3600)
    assert time_to_instances(points, 100) == pytest.approx(99 * 30)  # 49.5 minutes
    assert max(pt.instances for pt in points) == 100  # capped at the partition count
    assert instance_rate(p) == pytest.approx(0.2)
    assert drain_time(points) is None and points[-1].lag > 4_800_000  # 20 rec/s cannot drain 5M in 2 h


def test_adds_at_most_one_instance_per_evaluation_and_stops_below_the_threshold() -> None:
    p = Params(partitions=50, records=20_000, batch_size=100, record_s=0.001, lag_threshold=1000, interval_s=30)
    points = simulate(p, horizon_s=3600)
    steps = [b.instances - a.instances for a, b in pairwise(points)]
    assert set(steps) <= {0, 1}
    for before, after in pairwise(points):
        if after.instances > before.instances:
            assert after.lag / before.instances > 1000
    assert drain_time(points) is not None


def test_more_instances_than_partitions_would_idle() -> None:
    p = Params(partitions=2, records=10**9, batch_size=1, record_s=1.0, interval_s=1)
    points = simulate(p, horizon_s=10)
    assert max(pt.instances for pt in points) == 2
