"""(l) The Flink engine: records/s through the join and through the analysis, against a baseline job of the same
engine in the same run (a plain copy of the same records), and the engine's peak memory.

    python bench/flink_bench.py [--records 200000] [--rounds 3]

Each round runs, in turn on one engine (bounded jobs, parallelism 2, topics of 2 partitions): a raw copy of
`stocktrade` (the engine's floor: read, write, no decoding), the join (flink/02-user-trades.sql), a raw copy of the
settlements, and both analyses (flink/04-settlement-analysis.sql) over settlements framed as the function writes
them. Time is a job's wall time from submission to its end, so it includes the job's start (about 1-3 s here).
Peak memory is the engine process and its JVM, resident, sampled every 0.2 s. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Producer  # noqa: E402

from devstack import flink, stack  # noqa: E402
from localrun.experiments import streaming_run as sr  # noqa: E402
from localrun.experiments.kafka import create_topics  # noqa: E402
from settlement.schemas import TradeSettlement  # noqa: E402
from streaming import ddl, statements  # noqa: E402

PARALLELISM = 2


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total


class PeakMemory:
    def __init__(self, pid: int) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(pid,), daemon=True)
        self._thread.start()

    def _run(self, pid: int) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _tree_rss_mb(pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def _settlements(bootstrap: str, topic: str, count: int, start_ms: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"})
    dispositions = ("Completed", "Pending", "SEC Flagged", "Rejected")
    for i in range(count):
        stamp = start_ms + i // 10
        value = TradeSettlement(
            user=f"User_{i % 10}", symbol=f"Z{i % 7}", amount=float(i % 1000), disposition=dispositions[i % 4],
            reason="r", timestamp=stamp, source_topic="ut", source_partition=0, source_offset=i,
        ).SerializeToString()  # fmt: skip
        while True:
            try:
                producer.produce(topic, b"\x00\x00\x00\x00\x01\x00" + value, f"User_{i % 10}", timestamp=stamp)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def _copy(engine: flink.Engine, bootstrap: str, source: str) -> float:
    """A raw copy of `source` into a new topic: seconds."""
    target = f"bench-copy-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {target: 2})
    engine.sql("DROP TABLE IF EXISTS copy_in")
    engine.sql("DROP TABLE IF EXISTS copy_out")
    options = f"'properties.bootstrap.servers' = '{bootstrap}', 'value.format' = 'raw'"
    engine.sql(
        f"CREATE TABLE copy_in (`value` BYTES) WITH ('connector' = 'kafka', 'topic' = '{source}', {options}, "
        "'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"
    )
    engine.sql(f"CREATE TABLE copy_out (`value` BYTES) WITH ('connector' = 'kafka', 'topic' = '{target}', {options})")
    started = time.monotonic()
    engine.sql("INSERT INTO copy_out SELECT `value` FROM copy_in", wait=True)
    return time.monotonic() - started


def _fresh(engine: flink.Engine, bootstrap: str, topics: sr.StreamTopics) -> None:
    for table in ddl.load().values():
        for name in (table.name, ddl.raw_name(table)):
            engine.sql(f"DROP VIEW IF EXISTS {ddl.q(name)}")
            engine.sql(f"DROP TABLE IF EXISTS {ddl.q(name)}")
    sr.apply_definitions(engine, bootstrap, topics, bounded=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/flink_bench.py", description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    state, _ = stack.up()
    bootstrap = state.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    topics = sr.StreamTopics.for_run(run, f"bench-ut-{run}", f"bench-ts-{run}")
    create_topics(bootstrap, dict.fromkeys(topics.names.values(), 2), {"retention.ms": "-1"})
    start_ms = int(time.time() * 1000) - args.records // 10 - 60_000
    sr.produce_sources(bootstrap, topics, args.records, start_ms)
    _settlements(bootstrap, topics["trade-settlements"], args.records, start_ms)
    schema_id = sr.register_user_trades(state.registry_url, topics["user_trades"])
    started = time.monotonic()
    engine = flink.start(ddl.udf_specs(ddl.load()), parallelism=PARALLELISM)
    print(f"\n(l) Flink engine: {args.records:,} records, parallelism {PARALLELISM}; engine up in "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip
    memory = PeakMemory(engine.proc.pid)
    times: dict[str, list[float]] = {"copy trades": [], "join": [], "copy settlements": [], "analysis": []}
    try:
        for _ in range(args.rounds):
            times["copy trades"].append(_copy(engine, bootstrap, topics["stocktrade"]))
            _fresh(engine, bootstrap, topics)
            t0 = time.monotonic()
            sr.run_file(engine, statements.JOIN, {"user_trades": schema_id}, wait=True)
            times["join"].append(time.monotonic() - t0)
            times["copy settlements"].append(_copy(engine, bootstrap, topics["trade-settlements"]))
            _fresh(engine, bootstrap, topics)
            t0 = time.monotonic()
            sr.run_file(engine, statements.ANALYSIS, {}, wait=True)
            times["analysis"].append(time.monotonic() - t0)
    finally:
        peak = memory.stop()
        engine.stop()
    rate = {name: args.records / statistics.median(runs) for name, runs in times.items()}
    print(f"{'job':>18}{'rec/s':>10}   runs (s)")
    for name, runs in times.items():
        print(f"{name:>18}{rate[name]:>10.0f}   {' '.join(f'{r:.1f}' for r in runs)}")
    print(f"  join / copy of the trades: {rate['join'] / rate['copy trades']:.2f}")
    print(f"  analysis (both, one job) / copy of the settlements: {rate['analysis'] / rate['copy settlements']:.2f}")
    print(f"  engine peak resident memory (its Python and JVM): {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
