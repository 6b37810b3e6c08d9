"""The scale controller's lag readout: a consumer group's committed offsets against the partitions' ends.

The scaler connects as the listener does (KafkaScalerProvider: the same mode and credentials) and reads the trigger
group's lag every evaluation (localrun/platform/host.py). An experiment reads another group's lag the same way
(the exactly-once ledger's `<group>.settled`, localrun/experiments/drain.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from localrun.platform.scaler import partition_lag

log = logging.getLogger("localrun.host")
RENEW_AFTER_S = 15.0  # a readout failing this long gets a new consumer (see GroupLag.lag)


class GroupLag:
    """Records of a topic not yet committed by a group, over all its partitions."""

    def __init__(self, bootstrap: str, auth: Mapping[str, Any], group: str, topic: str, partitions: int) -> None:
        self._conf = {"bootstrap.servers": bootstrap, "enable.auto.commit": False, **auth, "group.id": group}
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer = Consumer(self._conf)
        self._unknown_since: float | None = None

    def lag(self) -> int:
        """The group's lag now; -1 while the broker cannot say (a restart, a coordinator move)."""
        try:
            total = 0
            for tp in self._consumer.committed(self._tps, timeout=10):
                low, high = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
                total += partition_lag(low, high, tp.offset)
        except KafkaException as exc:
            log.info("lag unknown for now: %s", exc)
            now = time.monotonic()
            self._unknown_since = self._unknown_since or now
            if now - self._unknown_since > RENEW_AFTER_S:
                # On the 3-node cluster a consumer whose partition leader was killed kept timing out in
                # get_watermark_offsets long after the leader moved and the node came back (librdkafka's
                # watermark query is known to stick after a leader loss, e.g. librdkafka #2535): a new one asks afresh.
                log.warning("lag unknown for %.0f s (%s): a new lag consumer", now - self._unknown_since, exc)
                self._consumer.close()
                self._consumer = Consumer(self._conf)
                self._unknown_since = None
            return -1
        self._unknown_since = None
        return total

    def close(self) -> None:
        self._consumer.close()
