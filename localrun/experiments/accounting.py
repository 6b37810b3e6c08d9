"""What became of a run's input records, by identity: the main job's check and the fault scenarios' counts.

Counting outputs is not enough: a batch the host delivers twice (its partition moved while it ran) writes its
settlements twice, and a count then balances a lost record against a duplicate. So every output is matched
to its source record (partition, offset), and every duplicate to the host's own record of what it delivered (the
offset ranges in each batch's report, gathered by localrun/experiments/probes.py). Also the latency histogram the
probes fill per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Message

from localrun.experiments.kafka import header
from localrun.platform.instance import Range
from settlement.core import SOURCE_OFFSET, SOURCE_PARTITION
from settlement.schemas import TradeSettlement


@dataclass(frozen=True)
class Coverage:
    settled: int
    dead_lettered: int
    duplicated: frozenset[tuple[int, int]]  # source records with more than one output
    duplicates: int  # outputs beyond the first for the same source record
    lost: int  # input records with no output at all


def coverage(inputs: int, settlements: Sequence[TradeSettlement], dead_letters: Sequence[Message]) -> Coverage:
    """Account for `inputs` records of a fresh single-topic stream (every output names an input of it)."""
    covered = [(s.source_partition, s.source_offset) for s in settlements]
    covered += [(int(header(m, SOURCE_PARTITION)), int(header(m, SOURCE_OFFSET))) for m in dead_letters]
    seen: set[tuple[int, int]] = set()
    duplicated: set[tuple[int, int]] = set()
    for source in covered:
        if source in seen:
            duplicated.add(source)
        seen.add(source)
    return Coverage(
        len(settlements), len(dead_letters), frozenset(duplicated), len(covered) - len(seen), inputs - len(seen)
    )


def delivered_twice(ranges: Iterable[Range]) -> list[Range]:
    """The offset ranges the host delivered to the function more than once, merged per partition."""
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for partition, lo, hi in ranges:
        by_partition.setdefault(partition, []).append((lo, hi))
    twice: list[Range] = []
    for partition, spans in sorted(by_partition.items()):
        edges = sorted([(lo, 1) for lo, _ in spans] + [(hi + 1, -1) for _, hi in spans])
        depth, start = 0, 0
        for offset, step in edges:
            if depth < 2 <= depth + step:
                start = offset
            elif depth >= 2 > depth + step and offset > start:
                if twice and twice[-1][0] == partition and twice[-1][2] + 1 >= start:
                    twice[-1] = (partition, twice[-1][1], offset - 1)
                else:
                    twice.append((partition, start, offset - 1))
            depth += step
    return twice


def unexplained(duplicated: Iterable[tuple[int, int]], redelivered: Sequence[Range]) -> list[tuple[int, int]]:
    """Duplicated source records the host did not deliver twice: a defect, not at-least-once redelivery."""
    return sorted((p, o) for p, o in duplicated if not any(rp == p and lo <= o <= hi for rp, lo, hi in redelivered))


LATENCY_BUCKET_MS = 5


def latency_buckets(timestamps_ms: Iterable[int], done_ms: float) -> dict[int, int]:
    """A batch's records' latency from their trade's record timestamp to the batch's return (every output
    acknowledged, or in the partition's open transaction), counted per `LATENCY_BUCKET_MS` bucket: a few dozen
    numbers per batch cross the process boundary instead of one per record. A settlement's own record timestamp
    is its trade's, so the latency can no longer be read off the output topic."""
    counts: dict[int, int] = {}
    for stamp in timestamps_ms:
        bucket = int(done_ms - stamp) // LATENCY_BUCKET_MS
        counts[bucket] = counts.get(bucket, 0) + 1
    return counts


def bucket_percentile(counts: Mapping[int, int], q: float) -> float:
    """The `q` quantile (0..1) of a `latency_buckets` histogram, in ms (a bucket's upper edge); NaN when empty."""
    total = sum(counts.values())
    if total == 0:
        return float("nan")
    rank, seen = min(total - 1, int(q * total)), 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen > rank:
            return float((bucket + 1) * LATENCY_BUCKET_MS)
    return float((max(counts) + 1) * LATENCY_BUCKET_MS)
