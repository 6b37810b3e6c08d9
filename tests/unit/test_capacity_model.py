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


def test_target_scaling_sets_ceil_lag_over_threshold_at_once() -> None:
    p = Params(partitions=100, records=5_000_000, batch_size=1, record_s=5.0, lag_threshold=1000, interval_s=30)
    points = simulate(p, horizon_s=600, mode="target")
    assert time_to_instances(points, 100) == pytest.approx(30)  # one evaluation, capped at the partitions
    small = simulate(Params(partitions=100, records=2500, batch_size=1, record_s=1e9), horizon_s=60, mode="target")
    assert small[1].instances == 3  # ceil(2500 / 1000)


def test_target_scaling_scales_in_but_not_right_after_a_scale_out() -> None:
    from localrun.platform.scaler import ScaleController, partition_lag

    c = ScaleController("target", lag_threshold=100, partitions=10, scale_in_delay_s=60)
    assert c.desired(lag=550, instances=1, now_s=0) == 6
    assert c.desired(lag=50, instances=6, now_s=30) == 6  # throttled: a scale-out 30 s ago
    assert c.desired(lag=50, instances=6, now_s=61) == 1
    assert c.desired(lag=-1, instances=4, now_s=200) == 4  # lag unknown: no change
    assert (partition_lag(0, 100, -1001), partition_lag(40, 100, 10), partition_lag(0, 100, 70)) == (100, 60, 30)
    with pytest.raises(ValueError, match="scaling mode"):
        ScaleController("eager", 1, 1)


def test_a_fast_function_is_paced_by_the_executor_channel() -> None:
    fast = Params(partitions=4, records=1_000_000, batch_size=64, record_s=10e-6)
    defaults = Params(**{**fast.__dict__, "channel_capacity": 1, "channel_retry_s": 0.050})
    assert instance_rate(defaults) == pytest.approx(2 * 64 / 0.050)  # 2,560 rec/s, whatever the function
    assert instance_rate(fast) == pytest.approx(1 / 10e-6)  # host.json's channel leaves the function's pace
    slow = Params(**{**defaults.__dict__, "record_s": 0.01})
    assert instance_rate(slow) == pytest.approx(100)  # slower than the channel: the function's pace
