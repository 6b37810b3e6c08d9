"""The cost model's arithmetic: Premium bills every allocated instance-second, Flex the always-ready baseline
plus executing time; a burst's extra instance-seconds come from the capacity model's target-based scale-out."""

from __future__ import annotations

import pytest

from scripts.capacity_model import Params
from scripts.cost_model import MONTH_S, Prices, burst, busy_fraction, steady

P = Params(partitions=6, records=5_000_000, batch_size=256, record_s=12e-6, batch_overhead_s=0.008, interval_s=30)


def test_a_steady_month_on_premium_is_one_ep1_all_month() -> None:
    costs = steady(200, P, Prices(), memory_gb=2, premium_vcpu=1, premium_gb=3.5)
    assert costs["premium"].usd == pytest.approx(MONTH_S / 3600 * (0.173 + 3.5 * 0.0123))
    assert costs["premium"].instance_seconds == costs["flex"].instance_seconds == MONTH_S


def test_flex_bills_the_baseline_and_only_the_executing_time() -> None:
    busy, executions_s = busy_fraction(200, P)
    assert executions_s == pytest.approx(1.0)  # below 256 rec/s a batch is released every subscriber interval
    assert busy == pytest.approx(200 * 12e-6 + 0.008)
    costs = steady(200, P, Prices(), memory_gb=2, premium_vcpu=1, premium_gb=3.5)
    expected = MONTH_S * 2 * 0.000004 + busy * MONTH_S * 2 * 0.000016 + MONTH_S / 1e6 * 0.40
    assert costs["flex"].usd == pytest.approx(expected)
    assert costs["flex"].usd < costs["premium"].usd


def test_a_burst_scales_to_the_partitions_and_premium_holds_them_until_scale_in() -> None:
    costs = burst(5_000_000, P, Prices(), memory_gb=2, premium_vcpu=1, premium_gb=3.5)
    assert costs["flex"].instance_seconds > 0
    assert costs["premium"].instance_seconds == pytest.approx(costs["flex"].instance_seconds + 60 * 5)
