"""The main job's Flink part: the engine started, the sources written, the join running while the function settles
its output, then the analysis over the settlements, the results printed, and both ends checked."""

from __future__ import annotations

import atexit
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import flink
from localrun.experiments import streaming_run as sr
from localrun.experiments.charts import analysis_chart
from localrun.experiments.kafka import read_to_end
from streaming import ddl, statements

# Two tasks per operator on this 2-core machine: more only contend for the cores (six ran the join at 8,000 trades/s).
PARALLELISM = 2


@dataclass
class StreamRun:
    engine: flink.Engine
    bootstrap: str
    topics: sr.StreamTopics
    sources: sr.Sources
    cfg: sr.SourceConfig
    poison: Collection[bytes]
    join_job: str
    started: float
    partitions: int

    @classmethod
    def start(
        cls,
        bootstrap: str,
        registry_url: str,
        run_id: str,
        user_trades: str,
        settlements: str,
        partitions: int,
        trades: int,
        poison: Collection[bytes] = (),
        rate: float | None = None,
        registry_conf: Mapping[str, Any] | None = None,
    ) -> StreamRun:
        """Start the engine and the join; returns once the join job runs (the function may start consuming)."""
        t0 = time.monotonic()
        if not flink.is_set_up():
            print("setting up the Flink engine in .cache/ (first run only: PyFlink from PyPI, the Kafka connector from "
                  "Maven Central, about 400 MB)", flush=True)  # fmt: skip
        topics = sr.StreamTopics.for_run(run_id, user_trades, settlements)
        sr.create_stream_topics(bootstrap, topics, partitions)
        engine = flink.start(ddl.udf_specs(ddl.load()), parallelism=PARALLELISM)
        atexit.register(engine.stop)
        started_s = time.monotonic() - t0
        cfg = sr.SourceConfig()
        # Trades a few milliseconds apart ending about now, as if the run had been streaming for a while.
        start_ms = int(time.time() * 1000) - trades * cfg.step_us // 1000 - 60_000
        sources = sr.produce_sources(bootstrap, topics, trades, start_ms, cfg, rate)
        print(
            f"flink engine started in {started_s:.1f}s; generated {len(sources.trades)} trades and "
            f"{len(sources.users)} users rows in {time.monotonic() - t0 - started_s:.1f}s"
        )
        schema_id = sr.register_user_trades(registry_url, user_trades, registry_conf)
        sr.apply_definitions(engine, bootstrap, topics, bounded=True)
        (job,) = sr.run_file(engine, statements.JOIN, {"user_trades": schema_id}, wait=False)
        print(f"flink: the join (flink/{statements.JOIN}) runs as job {job}")
        return cls(engine, bootstrap, topics, sources, cfg, set(poison), job, time.monotonic(), partitions)

    def finish(self, chart: Path | None = None) -> int:
        """Wait for the join, check it, run the analysis, print and check it (and chart it to `chart`); stop the
        engine. 1 on a mismatch."""
        try:
            return self._finish(chart)
        finally:
            self.engine.stop()

    def _finish(self, chart: Path | None) -> int:
        self.engine.wait(self.join_job)
        joined = [m for m in read_to_end(self.bootstrap, self.topics["user_trades"]) if m.value() not in self.poison]
        join = sr.check_join(self.sources, joined, self.cfg)
        print(
            f"\njoin (flink/{statements.JOIN}): {join.joined}/{join.trades} trades in user_trades, {join.no_user} "
            f"with no users row ({self.cfg.missing}), {join.moved} after {self.cfg.moved}'s region changed; "
            f"missing {join.missing}, extra {join.extra}: {'OK' if join.ok else 'MISMATCH'}"
        )
        for line in join.wrong:
            print(f"  {line}")
        t0 = time.monotonic()
        sr.run_file(self.engine, statements.ANALYSIS, {}, wait=True)
        analysed_s = time.monotonic() - t0
        settled = sr.settled_pairs(read_to_end(self.bootstrap, self.topics["trade-settlements"]))
        got = sr.engine_windows(self.bootstrap, self.topics)
        windows = sr.check_windows(sr.expected_windows(settled), got)
        _print_analysis(got, analysed_s)
        print(
            f"\nanalysis check: {windows.windows[sr.BY_SYMBOL]} one-minute and {windows.windows[sr.EXPOSURE]} "
            f"hourly windows against the same sums over the {len(settled)} settlements a read_committed reader sees: "
            f"{'OK' if windows.ok else 'MISMATCH'}"
        )
        for line in windows.wrong:
            print(f"  {line}")
        if chart is not None:
            chart.parent.mkdir(parents=True, exist_ok=True)
            title = f"analysis of {len(settled):,} settlements (flink/{statements.ANALYSIS})"
            print(f"analysis chart: {analysis_chart(got[sr.BY_SYMBOL], got[sr.EXPOSURE], chart, title)}")
        return 0 if join.ok and windows.ok else 1


def _print_analysis(got: dict[str, dict[tuple[str, ...], dict[str, Any]]], elapsed_s: float) -> None:
    print(f"\nanalysis (flink/{statements.ANALYSIS}) in {elapsed_s:.1f}s")
    exposure = got[sr.EXPOSURE]
    print(f"  {'hour (UTC)':<21}{'symbol':<7}{'pending':>18}{'SEC flagged':>16}{'completed':>18}{'rejected':>10}"
          f"{'trades':>9}")  # fmt: skip
    for (hour, symbol), row in sorted(exposure.items()):
        print(
            f"  {hour:<21}{symbol:<7}{row['PENDING_AMOUNT']:>18,.0f}{row['FLAGGED_AMOUNT']:>16,.0f}"
            f"{row['COMPLETED_AMOUNT']:>18,.0f}{row['REJECTED_TRADES']:>10}{row['TRADES']:>9}"
        )
    by_minute = got[sr.BY_SYMBOL]
    busiest = max(by_minute.items(), key=lambda kv: kv[1]["TRADES"], default=None)
    if busiest is not None:
        (start, symbol, disposition), row = busiest
        print(
            f"  {len(by_minute)} one-minute windows per symbol and disposition; the busiest: {start} {symbol} "
            f"{disposition}, {row['TRADES']} trades, {row['AMOUNT']:,.0f}"
        )
