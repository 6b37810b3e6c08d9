"""One batch: decode → settle → encode every record, then produce, then wait for every acknowledgement.

Decoding and encoding all records before producing any means a registry outage fails the batch with nothing
written, so the retry does not duplicate half a batch. Poison records never fail the batch: each becomes one
dead-letter record. Invariant: every input record ends as exactly one settlement or one dead-letter record,
and the function returns only when all of them are acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence

from settlement import telemetry
from settlement.core.admission import admit
from settlement.core.deadletter import (
    BROKER_REFUSED,
    PRODUCER_REFUSED,
    SHRUNK,
    dead_letter,
    record_size,
    refused_as_too_large,
)
from settlement.core.deadline import Deadline
from settlement.core.errors import DeliveryError, PoisonRecord, TransientError
from settlement.core.plan import BatchResult, Output, Plan
from settlement.core.poison import PoisonKind
from settlement.core.records import InputRecord, TradeValue
from settlement.core.rules import RulesConfig, Verdict, amount_of, decide
from settlement.core.topics import Topics
from settlement.delivery.committer import Committer
from settlement.delivery.exactly_once import ExactlyOnce
from settlement.delivery.ledger import Ledger
from settlement.delivery.producer import DeliveryTracker, RecordTooLarge
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.serde import json_value
from settlement.serde.decoder import TradeDecoder
from settlement.serde.encoder import SettlementEncoder

log = logging.getLogger("settlement.batch")

ValueDecoder = Callable[[bytes | None], TradeValue]


class SettlementProcessor:
    """Settles batches; holds only process-wide, reusable parts (decoder caches, encoder, producer)."""

    def __init__(
        self,
        decoder: TradeDecoder,
        encoder: SettlementEncoder,
        rules: RulesConfig,
        topics: Topics,
        tracker_factory: Callable[[], DeliveryTracker],
        delivery_timeout_s: float,
        *,
        max_record_bytes: int,
        http_limits: tuple[int, int],
        clock: Callable[[], float] = time.time,
        max_message_bytes: int = 1_000_000,
        ledger: Ledger | None = None,
    ) -> None:
        self._decoder = decoder
        self._encoder = encoder
        self._rules = rules
        self._topics = topics
        self._tracker_factory = tracker_factory
        self._timeout_s = delivery_timeout_s
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        self._max_record_bytes = max_record_bytes
        self.http_limits = http_limits  # (max body bytes, max records) of a sink-connector request
        self._settlement_limit = max_message_bytes - record_size(None, None, ())  # key + value, margin kept
        self._ledger = ledger
        self._exactly_once = None if ledger is None else ExactlyOnce(ledger, topics)
        # The ledger's background commits and recoveries; it settles a lost range through this processor.
        self._committer = None if ledger is None else Committer(ledger, self._recover)

    @property
    def ledger(self) -> Ledger | None:
        """The exactly-once ledger (None under at-least-once): the repair takes partitions through it."""
        return self._ledger

    @property
    def delivery_timeout_s(self) -> float:
        return self._timeout_s

    def close(self) -> None:
        """Commit what the exactly-once ledger holds open and release its producers."""
        if self._ledger is not None:
            self._ledger.close()

    def _recover(self, topic: str, partition: int, upto: int) -> None:
        """Settle a source range again whose transaction this process lost, or a gap too long for one batch:
        read from the settled position up to `upto` in steps, each run as a batch (records settled meanwhile
        are skipped as in any batch)."""
        assert self._ledger is not None
        ledger = self._ledger
        part = ledger.partitions.get(topic, partition)
        while True:
            deadline = Deadline.after(self._timeout_s)
            with part.lock:
                ledger.take(part, deadline)
                start = part.position
            if start is None or start >= upto:
                return
            records, _ = ledger.source.read_range(topic, partition, start, upto, deadline)
            if not records:
                return  # only markers or aborted records up to `upto`
            log.warning("settling %s[%d] offsets %d..%d from the source", topic, partition, start, records[-1].offset)
            self.process(records)

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
            if self._exactly_once is None:
                plan = self._plan(records, decode, span, deadline)
                self._deliver(records, plan, deadline)
                outcomes = plan.outcomes
            else:
                outcomes = self._exactly_once.settle(
                    records,
                    lambda recs, shrink: self._plan(recs, decode, span, deadline, shrink),
                    deadline,
                    **({"attempts": attempts} if attempts else {}),
                )
            result = BatchResult(records, outcomes)
            elapsed_ms = (time.monotonic() - started) * 1000
            telemetry.record_batch(span, result.dispositions, result.reasons, len(records), elapsed_ms)
        log.info(
            "batch settled=%d dead_lettered=%d %s in %.1f ms",
            result.settled,
            result.dead_lettered,
            dict(result.reasons) if result.reasons else "",
            elapsed_ms,
        )
        return result

    def _deliver(self, records: Sequence[InputRecord], plan: Plan, deadline: Deadline) -> None:
        """Produce every planned record and wait for the batch's own acknowledgements. A record the producer
        or the broker refuses as too large is replaced by its shrunk dead letter (nothing of it was written),
        so size never fails a batch after part of it was produced."""
        tracker = self._tracker_factory()
        for i, item in plan.single.items():
            try:
                tracker.produce(item.topic, item.key, item.value, item.headers, deadline, index=i)
            except RecordTooLarge as exc:
                self._produce_shrunk(tracker, records, plan, i, deadline, f"{PRODUCER_REFUSED} ({exc})")
        if plan.plain:
            settlements = self._topics.settlements
            for i in tracker.produce_batch(settlements, plan.plain_indexes, plan.plain, deadline):
                self._produce_shrunk(tracker, records, plan, i, deadline, PRODUCER_REFUSED)
        refused = tracker.wait(deadline)
        if not refused:
            return
        for i in refused:
            self._produce_shrunk(tracker, records, plan, i, deadline, BROKER_REFUSED)
        if tracker.wait(deadline):
            raise DeliveryError("the broker refused even the shrunk dead letters of oversize records")

    def _produce_shrunk(
        self,
        tracker: DeliveryTracker,
        records: Sequence[InputRecord],
        plan: Plan,
        i: int,
        deadline: Deadline,
        detail: str,
    ) -> None:
        """Replace record `i`'s output with its shrunk dead letter and hand that to the producer."""
        log.warning("dead-lettering %s shrunk: %s", records[i].coordinates, detail)
        poison = refused_as_too_large(detail)
        plan.outcomes[i] = poison
        item = plan.single[i] = self._dead_letter(records[i], poison, max_bytes=SHRUNK)
        tracker.produce(item.topic, item.key, item.value, item.headers, deadline, index=i)

    def _plan(
        self,
        records: Sequence[InputRecord],
        decode: ValueDecoder,
        span: telemetry.BatchSpan,
        deadline: Deadline,
        shrink: Collection[str] = (),
    ) -> Plan:
        """Each record's output: its settlement, or its dead letter if it is poison (shrunk for the records in
        `shrink`, which the broker refused as too large in an aborted transaction)."""
        plan = Plan()
        outcomes, plain_indexes, plain, single = plan.outcomes, plan.plain_indexes, plan.plain, plan.single
        settle, settlements = self._settle, self._topics.settlements
        scratch = TradeSettlement()  # one message per batch, refilled per record: batches may run concurrently
        for i, record in enumerate(records):
            if deadline.passed():
                # Registry lookups are bounded one by one; many slow ones must still not outlive the batch.
                raise TransientError(f"batch deadline passed after planning {i} of {len(records)} records")
            try:
                if shrink and record.coordinates in shrink:
                    raise refused_as_too_large(BROKER_REFUSED)
                outcome, value = settle(record, decode, scratch)
            except PoisonRecord as exc:
                log.warning("dead-lettering %s: %s", record.coordinates, exc)
                poison = exc
            except TransientError:
                raise
            except Exception as exc:  # one record's surprise must not block its partition forever
                log.exception("dead-lettering %s: unexpected %s", record.coordinates, type(exc).__name__)
                poison = PoisonRecord(PoisonKind.UNSETTLEABLE, f"{type(exc).__name__}: {exc}")
            else:
                outcomes.append(outcome)
                headers = span.output_headers(record.headers)
                if headers:
                    single[i] = Output(settlements, record.key, value, headers)
                else:
                    plain_indexes.append(i)
                    plain.append({"key": record.key, "value": value})
                continue
            outcomes.append(poison)
            single[i] = self._dead_letter(record, poison, SHRUNK if shrink and record.coordinates in shrink else None)
        return plan

    def _dead_letter(self, record: InputRecord, poison: PoisonRecord, max_bytes: int | None = None) -> Output:
        limit = self._max_message_bytes if max_bytes is None else max_bytes
        key, value, headers = dead_letter(record, poison, self._clock(), limit)
        return Output(self._topics.dead_letter, key, value, headers)

    def _settle(self, record: InputRecord, decode: ValueDecoder, settlement: TradeSettlement) -> tuple[Verdict, bytes]:
        """The record's verdict and its settlement's value, or `PoisonRecord`."""
        topic, partition, offset, key = record.topic, record.partition, record.offset, record.key
        user = admit(record, self._max_record_bytes)
        trade = decode(record.value)
        # The SEC sample's stable identity is the record's coordinates.
        outcome = decide(trade, user, record.coordinates, self._rules)
        # Every field is assigned, so the reused message serialises exactly as a new one would (proto3 fields
        # set to their defaults are not written either way); assigning is cheaper than keyword construction.
        settlement.user = user or ""
        settlement.symbol = trade.symbol
        settlement.amount = amount_of(trade.quantity, trade.price)
        settlement.disposition = outcome.disposition  # StrEnum members are str: no .value lookups per record
        settlement.reason = outcome.reason
        settlement.timestamp = record.timestamp_ms  # type: ignore[assignment]  # admitted: never None here
        settlement.source_topic = topic
        settlement.source_partition = partition
        settlement.source_offset = offset
        value = self._encoder.encode(settlement)
        if len(value) + len(key or b"") > self._settlement_limit:
            raise PoisonRecord(
                PoisonKind.OVERSIZE,
                f"its settlement would be {len(value) + len(key or b'')} bytes with the key, over the "
                f"producer's message.max.bytes {self._max_message_bytes}",
            )
        return outcome, value
