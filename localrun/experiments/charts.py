"""Pictures of a run: lag, instances and throughput over time with the scale-out decisions marked, and the
capacity model's scenario in both scaling modes. matplotlib is a development dependency only (never in
requirements.txt or the published package), imported here on first use with a file-only backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Sample:
    t_s: float
    outputs: int
    rate: float
    lag: int
    instances: int


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_chart(
    samples: Sequence[Sample],
    scale_events: Sequence[tuple[float, int, int]],
    path: Path,
    title: str,
    settlement_lag: Sequence[tuple[float, Mapping[int, tuple[int, float]]]] = (),
) -> Path:
    """Four stacked panels sharing time: the trigger's lag, settlement lag (the repair's gauges at each of its
    runs: records summed over partitions, and the longest a settled position stood behind), instances (scale-outs
    marked), settled records per second.

    Settlement lag is drawn as what it is, one measurement per repair run, a marker each: nothing is known of it
    between runs, and a step held to the next run (or to the end of the chart) showed a value no run measured."""
    plt = _pyplot()
    fig, (lag_ax, settle_ax, inst_ax, rate_ax) = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    t = [s.t_s for s in samples]
    lag_ax.plot(t, [max(s.lag, 0) for s in samples], color="tab:red")
    lag_ax.set_ylabel("trigger lag (records)")
    runs_t = [t for t, _ in settlement_lag]
    settle_ax.plot(runs_t, [sum(n for n, _ in lag.values()) for _, lag in settlement_lag], "o",
                   color="tab:purple", label="records, at each repair run")  # fmt: skip
    settle_ax.set_ylabel("settlement lag (records)")
    settle_ax.set_ylim(bottom=0)
    age_ax = settle_ax.twinx()
    ages = [max((s for _, s in lag.values()), default=0.0) for _, lag in settlement_lag]
    age_ax.plot(runs_t, ages, "x", color="tab:orange", label="longest behind (s)")
    age_ax.set_ylabel("behind for (s)")
    # Seconds, read as seconds: a run that has just seen a partition behind measures a few microseconds, and
    # matplotlib's automatic offset then labelled the axis in units of 1e-5 s.
    age_ax.set_ylim(0, max(1.0, *ages) * 1.1 if ages else 1.0)
    age_ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    inst_t = [e[0] for e in scale_events]
    inst_ax.step([0.0, *inst_t], [samples[0].instances if samples else 1, *[e[1] for e in scale_events]], where="post")
    previous = samples[0].instances if samples else 1
    for when, count, lag in scale_events:
        if count != previous:
            inst_ax.annotate(
                f"{previous}→{count}\nlag {lag:,}",
                (when, count),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=8,
                arrowprops={"arrowstyle": "-", "color": "grey"},
            )
            for ax in (lag_ax, settle_ax, inst_ax, rate_ax):
                ax.axvline(when, color="grey", linestyle=":", linewidth=0.8)
            previous = count
    inst_ax.set_ylabel("instances")
    inst_ax.set_ylim(bottom=0)
    rate_ax.plot(t, [s.rate for s in samples], color="tab:green")
    rate_ax.set_ylabel("settled + dead-lettered / s")
    rate_ax.set_xlabel("seconds since the host started")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def capacity_chart(points_by_mode: Mapping[str, Sequence[Any]], path: Path, title: str) -> Path:
    """Instances and lag over time (minutes) for each scaling mode of the capacity model."""
    plt = _pyplot()
    fig, (inst_ax, lag_ax) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for mode, points in points_by_mode.items():
        minutes = [p.t_s / 60 for p in points]
        inst_ax.step(minutes, [p.instances for p in points], where="post", label=mode)
        lag_ax.plot(minutes, [p.lag for p in points], label=mode)
    inst_ax.set_ylabel("instances")
    inst_ax.legend()
    lag_ax.set_ylabel("lag (records)")
    lag_ax.set_xlabel("minutes")
    lag_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def analysis_chart(
    by_minute: Mapping[tuple[str, ...], Mapping[str, Any]],
    hourly: Mapping[tuple[str, ...], Mapping[str, Any]],
    path: Path,
    title: str,
) -> Path:
    """The analysis as Flink emitted it: settled trades per minute by disposition (all symbols), and per symbol the
    hourly amounts by state (pending, SEC flagged, completed) summed over the run's hours."""
    plt = _pyplot()
    fig, (minute_ax, symbol_ax) = plt.subplots(2, 1, figsize=(10, 8))
    minutes = sorted({key[0] for key in by_minute})
    dispositions = sorted({key[2] for key in by_minute})
    bottom = [0] * len(minutes)
    for disposition in dispositions:
        counts = [sum(r["TRADES"] for k, r in by_minute.items() if k[0] == m and k[2] == disposition) for m in minutes]
        minute_ax.bar([m[11:16] for m in minutes], counts, bottom=bottom, label=disposition)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    minute_ax.set_ylabel("settled trades per minute")
    minute_ax.legend(fontsize="small")
    symbols = sorted({key[1] for key in hourly})
    left = [0.0] * len(symbols)
    for column, label in (("COMPLETED_AMOUNT", "completed"), ("PENDING_AMOUNT", "pending"),
                          ("FLAGGED_AMOUNT", "SEC flagged")):  # fmt: skip
        amounts = [sum(r[column] for k, r in hourly.items() if k[1] == s) for s in symbols]
        symbol_ax.barh(symbols, amounts, left=left, label=label)
        left = [a + b for a, b in zip(left, amounts, strict=True)]
    symbol_ax.set_xlabel("amount (hourly windows summed)")
    symbol_ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
