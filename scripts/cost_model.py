"""Flex Consumption against Elastic Premium: instance-seconds from the capacity model, priced with published units.

    python scripts/cost_model.py [--rate 200] [--burst-records 5000000] [--partitions 6]

Why: the plans bill different things. Elastic Premium bills every allocated instance per second (vCPU-s and GB-s),
at least one all month, idle or not. Flex Consumption bills an always-ready instance's memory all the time at a
low baseline rate, plus execution time (memory x seconds while a function runs) and executions; on-demand
instances bill execution time only. A Kafka function's busy time follows from the capacity model
(scripts/capacity_model.py: per-record and per-batch time, target-based scale-out, the executor channel).

The price units are defaults to override (`--flex-*`, `--premium-*`): no price list can be read from here, so the
figures are only as good as the units given; docs/deploy.md says where each default came from and its date.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.cli_support import HelpFormatter
from scripts.capacity_model import Params, instance_rate, simulate

MONTH_S = 30 * 24 * 3600


@dataclass(frozen=True)
class Prices:
    """USD per unit, pay-as-you-go."""

    flex_on_demand_gb_s: float = 0.000026
    flex_always_ready_baseline_gb_s: float = 0.000004
    flex_always_ready_execution_gb_s: float = 0.000016
    flex_per_million_executions: float = 0.40
    premium_vcpu_hour: float = 0.173
    premium_gb_hour: float = 0.0123


@dataclass(frozen=True)
class Cost:
    instance_seconds: float
    busy_seconds: float
    usd: float


def busy_fraction(rate: float, p: Params, interval_s: float = 1.0) -> tuple[float, float]:
    """(share of an instance's time spent executing, executions per second) at a steady `rate` rec/s that one
    instance keeps up with: a batch is released when full or when the subscriber interval ends."""
    per_batch = min(p.batch_size, max(1.0, rate * interval_s))
    executions = rate / per_batch
    return min(1.0, executions * (per_batch * p.record_s + p.batch_overhead_s)), executions


def steady(
    rate: float, p: Params, prices: Prices, memory_gb: float, premium_vcpu: float, premium_gb: float
) -> dict[str, Cost]:
    """A month at `rate` rec/s: instances = ceil(rate / instance rate), at least one."""
    instances = max(1, math.ceil(rate / instance_rate(p)))
    busy, executions_s = busy_fraction(rate / instances, p)
    busy_s = busy * instances * MONTH_S
    executions = executions_s * instances * MONTH_S
    flex = (
        instances * MONTH_S * memory_gb * prices.flex_always_ready_baseline_gb_s
        + busy_s * memory_gb * prices.flex_always_ready_execution_gb_s
        + executions / 1e6 * prices.flex_per_million_executions
    )
    premium = (
        instances * MONTH_S / 3600 * (premium_vcpu * prices.premium_vcpu_hour + premium_gb * prices.premium_gb_hour)
    )
    return {
        "flex": Cost(instances * MONTH_S, busy_s, flex),
        "premium": Cost(instances * MONTH_S, instances * MONTH_S, premium),
    }


def burst(
    records: int, p: Params, prices: Prices, memory_gb: float, premium_vcpu: float, premium_gb: float
) -> dict[str, Cost]:
    """One backlog of `records`, drained by target-based scale-out; cost above the one always-on instance.
    Premium bills the extra instances while allocated (until scale-in, 60 s after the last scale-out at the
    earliest); Flex bills on-demand instances for the time they execute, which is all of it while lag lasts."""
    points = simulate(p, horizon_s=24 * 3600, step_s=1.0, mode="target")
    extra_s = sum((b.t_s - a.t_s) * max(0, a.instances - 1) for a, b in itertools.pairwise(points))
    executions = records / p.batch_size
    flex = extra_s * memory_gb * prices.flex_on_demand_gb_s + executions / 1e6 * prices.flex_per_million_executions
    allocated_s = extra_s + 60.0 * max(0, max(pt.instances for pt in points) - 1)  # held until the scale-in throttle
    premium = allocated_s / 3600 * (premium_vcpu * prices.premium_vcpu_hour + premium_gb * prices.premium_gb_hour)
    return {
        "flex": Cost(extra_s, extra_s, flex),
        "premium": Cost(allocated_s, extra_s, premium),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="steady records per second")
    parser.add_argument("--burst-records", type=int, default=5_000_000, help="records of one burst (backlog)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the source topic")
    parser.add_argument("--record-seconds", type=float, default=12e-6, help="per-record time (capacity model)")
    parser.add_argument("--batch-overhead", type=float, default=0.008, help="per-batch time, s (acks=all round trip)")
    parser.add_argument("--batch-size", type=int, default=256, help="host.json maxBatchSize")
    parser.add_argument("--flex-memory-mb", type=int, default=2048, help="Flex Consumption instance memory")
    parser.add_argument("--premium-vcpu", type=float, default=1.0, help="EP1: 1 vCPU")
    parser.add_argument("--premium-gb", type=float, default=3.5, help="EP1: 3.5 GB")
    for name, value in vars(Prices()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=value, help="price unit, USD")
    args = parser.parse_args(argv)
    prices = Prices(**{name: getattr(args, name) for name in vars(Prices())})
    p = Params(
        partitions=args.partitions,
        records=args.burst_records,
        batch_size=args.batch_size,
        record_s=args.record_seconds,
        batch_overhead_s=args.batch_overhead,
        interval_s=30.0,
    )
    memory_gb = args.flex_memory_mb / 1024
    rows = [
        (
            f"steady {args.rate:g} rec/s, 30 days",
            steady(args.rate, p, prices, memory_gb, args.premium_vcpu, args.premium_gb),
        ),
        (
            f"burst of {args.burst_records:,} records (extra instances)",
            burst(args.burst_records, p, prices, memory_gb, args.premium_vcpu, args.premium_gb),
        ),
    ]
    print(f"instance rate {instance_rate(p):,.0f} rec/s ({args.batch_size}-record batches)")
    print("| case | plan | instance-seconds | executing seconds | USD |\n|---|---|---:|---:|---:|")
    for label, costs in rows:
        for plan, cost in costs.items():
            print(f"| {label} | {plan} | {cost.instance_seconds:,.0f} | {cost.busy_seconds:,.0f} | {cost.usd:,.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
