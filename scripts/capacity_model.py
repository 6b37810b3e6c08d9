"""Capacity model for the Kafka-triggered function on a Premium plan: instances and lag over time.

The scale controller evaluates every `interval` seconds (localrun/platform/scaler.py, the same decision the local host
uses): `--scaling incremental` adds at most one instance while the lag per instance exceeds `lag_threshold`;
`--scaling target` (the default since runtime 4.19) sets ceil(lag / lag_threshold) instances at once. Never
more instances than partitions. Each instance settles one batch at a time (`batch_size` records, `record_s`
seconds each, plus `batch_overhead_s`), over the partitions it owns, and no faster than the extension's
executor channel lets batches in: when the channel (`executorChannelCapacity` batches) is full, the
subscriber sleeps `channelFullRetryIntervalInMs` and tries again, so a function faster than that gets about
capacity + 1 batches per interval (the one the executor takes at once, then the channel's). With the
extension's defaults (1 batch, 50 ms) that is 40 batches a second, 2,560 records at maxBatchSize 64.

    python scripts/capacity_model.py --partitions 100 --records 5000000 --batch-size 1 --record-seconds 5 \
        --scaling incremental

reproduces the figure reported for the service: 100 instances after about 50 minutes (99 evaluations of
30 s), with lag still near 5M because 100 instances at 5 s per record settle only 20 records/s. Without
`--scaling` it prints both modes for the same input.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.cli_support import HelpFormatter
from localrun.platform.scaler import MODES, ScaleController


@dataclass(frozen=True)
class Params:
    partitions: int
    records: int
    batch_size: int
    record_s: float
    lag_threshold: int = 1000
    interval_s: float = 30.0
    batch_overhead_s: float = 0.0
    start_instances: int = 1
    max_instances: int | None = None
    channel_capacity: int = 2  # host.json executorChannelCapacity
    channel_retry_s: float = 0.001  # host.json channelFullRetryIntervalInMs, in seconds


@dataclass(frozen=True)
class Point:
    t_s: float
    instances: int
    lag: float


def instance_rate(p: Params) -> float:
    """Records per second one instance settles: the function's pace, or the executor channel's if slower."""
    function_bound = p.batch_size / (p.batch_size * p.record_s + p.batch_overhead_s)
    channel_bound = p.batch_size * (p.channel_capacity + 1) / p.channel_retry_s
    return min(function_bound, channel_bound)


def simulate(p: Params, horizon_s: float, step_s: float | None = None, mode: str = "incremental") -> list[Point]:
    """Lag and instances at every scale evaluation (and at the end), from a backlog of `p.records`."""
    controller = ScaleController(mode, p.lag_threshold, p.partitions, p.max_instances)
    cap = controller.cap
    step = step_s or p.interval_s
    instances, lag, t = min(p.start_instances, cap), float(p.records), 0.0
    points = [Point(0.0, instances, lag)]
    next_eval = p.interval_s
    while t < horizon_s and lag > 0:
        dt = min(step, next_eval - t, horizon_s - t)
        # Each instance works on its own partitions: with more instances than partitions some would idle.
        busy = min(instances, p.partitions)
        lag = max(0.0, lag - busy * instance_rate(p) * dt)
        t += dt
        if math.isclose(t, next_eval) or t >= next_eval:
            instances = controller.desired(math.ceil(lag), instances, t)
            next_eval += p.interval_s
            points.append(Point(t, instances, lag))
    if points[-1].t_s != t:
        points.append(Point(t, instances, lag))
    return points


def time_to_instances(points: list[Point], n: int) -> float | None:
    return next((pt.t_s for pt in points if pt.instances >= n), None)


def drain_time(points: list[Point]) -> float | None:
    return next((pt.t_s for pt in points if pt.lag <= 0), None)


def report(p: Params, points: list[Point], horizon_h: float, mode: str) -> None:
    print(f"\n--scaling {mode}")
    print(f"{'minute':>8}{'instances':>11}{'lag':>14}")
    shown = set()
    for pt in points:
        minute = int(pt.t_s // 600) * 10
        if minute not in shown:
            shown.add(minute)
            print(f"{pt.t_s / 60:>8.1f}{pt.instances:>11}{pt.lag:>14.0f}")
    full = time_to_instances(points, min(p.partitions, p.max_instances or p.partitions))
    reached = f"max instances reached after {full / 60:.1f} min" if full is not None else "max instances not reached"
    print(f"per-instance rate {instance_rate(p):.3f} rec/s; {reached}")
    drained = drain_time(points)
    print(
        f"backlog drained after {drained / 60:.1f} min"
        if drained is not None
        else f"backlog not drained within {horizon_h} h (lag {points[-1].lag:.0f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--partitions", type=int, default=100, help="partitions of the source topic (max instances)")
    parser.add_argument("--records", type=int, default=5_000_000, help="lag at the start, records")
    parser.add_argument("--batch-size", type=int, default=1, help="records per batch (host.json maxBatchSize)")
    parser.add_argument("--record-seconds", type=float, default=5.0, help="seconds to settle one record")
    parser.add_argument("--lag-threshold", type=int, default=1000, help="KAFKA_LAG_THRESHOLD: lag per instance")
    parser.add_argument("--interval", type=float, default=30.0, help="scale evaluation interval, seconds")
    parser.add_argument("--batch-overhead", type=float, default=0.0, help="fixed seconds per batch")
    parser.add_argument("--channel-capacity", type=int, default=2, help="host.json executorChannelCapacity")
    parser.add_argument("--channel-retry-ms", type=float, default=1.0, help="host.json channelFullRetryIntervalInMs")
    parser.add_argument("--horizon-hours", type=float, default=2.0, help="how long to simulate")
    parser.add_argument("--scaling", choices=MODES, default=None, help="one mode (default: both)")
    parser.add_argument("--plot", type=Path, help="write a PNG of instances and lag over time for the mode(s)")
    args = parser.parse_args(argv)
    p = Params(
        args.partitions,
        args.records,
        args.batch_size,
        args.record_seconds,
        args.lag_threshold,
        args.interval,
        args.batch_overhead,
        channel_capacity=args.channel_capacity,
        channel_retry_s=args.channel_retry_ms / 1000,
    )
    modes = [args.scaling] if args.scaling else ["incremental", "target"]
    points = {mode: simulate(p, args.horizon_hours * 3600, mode=mode) for mode in modes}
    for mode in modes:
        report(p, points[mode], args.horizon_hours, mode)
    if args.plot:
        from localrun.experiments.charts import capacity_chart

        title = (
            f"{p.partitions} partitions, {p.records:,} records, {p.record_s:g} s a record, threshold {p.lag_threshold}"
        )
        print(f"\nchart: {capacity_chart(points, args.plot, title)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
