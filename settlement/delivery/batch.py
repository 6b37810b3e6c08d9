"""One batch: plan every record (planner.py: decode → settle → encode), then deliver the plan through the delivery
chosen at construction (at_least_once.py or exactly_once/, known here only through the `Delivery` seam of
settlement/core/plan.py), then record telemetry.

Decoding and encoding all records before producing any means a registry outage fails the batch with nothing
written, so the retry does not duplicate half a batch. Poison records never fail the batch: each becomes one
dead-letter record. Invariant: every input record ends as exactly one settlement or one dead-letter record,
and the function returns only when all of them are acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from settlement import telemetry
from settlement.core.deadline import Deadline
from settlement.core.plan import BatchResult, Delivery
from settlement.core.records import InputRecord
from settlement.delivery.planner import Planner, ValueDecoder
from settlement.serde import json_value
from settlement.serde.decoder import TradeDecoder

log = logging.getLogger("settlement.batch")


class SettlementProcessor:
    """Settles batches; holds only process-wide, reusable parts (decoder caches, encoder, the delivery)."""

    def __init__(self, decoder: TradeDecoder, planner: Planner, delivery: Delivery, delivery_timeout_s: float) -> None:
        """`delivery` is chosen once by the composition root (settlement/runtime/root.py): `AtLeastOnce`, or
        `ExactlyOnce`, which owns its ledger, committer and recovery (and settles a lost range through `process`,
        handed to it by the root)."""
        self._decoder = decoder
        self._planner = planner
        self._delivery = delivery
        self._timeout_s = delivery_timeout_s

    @property
    def delivery_timeout_s(self) -> float:
        return self._timeout_s

    def close(self) -> None:
        """Release what the delivery holds (exactly-once: commit what is open, release its producers)."""
        self._delivery.close()

    def prefetch(self, subject: str) -> None:
        """Resolve the latest writer schema of `subject` ahead of its records (the warm start)."""
        self._decoder.prefetch_latest(subject)

    @property
    def decoder(self) -> TradeDecoder:
        return self._decoder

    def process(
        self,
        records: Sequence[InputRecord],
        *,
        connector: bool = False,
        decode: ValueDecoder | None = None,
        attempts: int | None = None,
    ) -> BatchResult:
        """Settle a batch; raises `RetryBatch` (so the host, or the connector answered 503, retries it) on a
        delivery or registry failure; a record that can never be settled is dead-lettered, never raised.

        Values are Confluent-framed Protobuf resolved through the Schema Registry; with `connector`, also the
        sink connector's JSON values. `decode` replaces the decoder (tests inject a record's failure with it).
        `attempts` bounds how often the exactly-once path takes a partition again after being fenced (the
        repair: once, leaving the partition to whoever took it).
        """
        started = time.monotonic()
        deadline = Deadline(started + self._timeout_s)
        if decode is None:
            framed = self._decoder.for_batch()
            decode = json_value.sink_decoder(framed) if connector else framed
        with telemetry.batch_span(records) as span:
            outcomes = self._delivery.settle(
                records,
                self._planner.for_batch(decode, span, deadline),
                deadline,
                **({"attempts": attempts} if attempts else {}),
            )
            result = BatchResult(records, outcomes)
            elapsed_ms = (time.monotonic() - started) * 1000
            telemetry.record_batch(span, result.dispositions, result.reasons, len(records), elapsed_ms)
            telemetry.record_latency(result.settled_timestamps())
        log.info(
            "batch settled=%d dead_lettered=%d %s in %.1f ms",
            result.settled,
            result.dead_lettered,
            dict(result.reasons) if result.reasons else "",
            elapsed_ms,
        )
        return result
