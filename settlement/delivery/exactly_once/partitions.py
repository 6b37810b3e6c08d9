"""Partition state: each source partition's transactional producer, settled position and open transaction, and
the registry of the partitions a process settles, locked in a fixed order so that concurrent batches cannot
deadlock. No I/O here: the ledger (ledger.py) does the transactions on this state."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from confluent_kafka import Producer


class PartitionState:
    """One source partition: its transactional producer, committed position and open transaction. Used under
    `lock` only (one batch, or the committer, at a time)."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.lock = threading.Lock()
        self.producer: Producer | None = None
        self.committed: int | None = None  # the settled position as committed (None: the ledger has none yet)
        self.position: int | None = None  # ... including the open transaction
        self.open_since: float | None = None  # monotonic time the open transaction began

    def reset(self) -> None:
        """Forget the open transaction (aborted or lost): the next batch repairs from the committed position."""
        self.position = self.committed
        self.open_since = None


class Partitions:
    """Every source partition this process has settled (created on first use)."""

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], PartitionState] = {}
        self._lock = threading.Lock()

    def all(self) -> list[PartitionState]:
        return list(self._partitions.values())

    def get(self, topic: str, partition: int) -> PartitionState:
        key = (topic, partition)
        part = self._partitions.get(key)
        if part is None:
            with self._lock:
                part = self._partitions.setdefault(key, PartitionState(topic, partition))
        return part

    @contextmanager
    def locked(self, keys: Sequence[tuple[str, int]]) -> Iterator[list[PartitionState]]:
        """Lock a batch's partitions, in a fixed order so that concurrent batches cannot deadlock."""
        parts = [self.get(t, p) for t, p in sorted(set(keys))]
        taken: list[PartitionState] = []
        try:
            for part in parts:
                part.lock.acquire()
                taken.append(part)
            yield parts
        finally:
            for part in reversed(taken):
                part.lock.release()
