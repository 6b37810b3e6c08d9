"""A batch's plan, made before anything is produced: each record decoded, settled by the rules and encoded, or
dead-lettered if it is poison. Both delivery strategies produce what the plan holds (at_least_once.py,
exactly_once.py), so a registry outage fails a batch with nothing written, and the rules run once per record."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from settlement import telemetry
from settlement.core.admission import admit
from settlement.core.deadletter import BROKER_REFUSED, SHRUNK, dead_letter, record_size, refused_as_too_large
from settlement.core.deadline import Deadline
from settlement.core.errors import PoisonRecord, TransientError
from settlement.core.plan import Output, Plan, PlanRecords
from settlement.core.poison import PoisonKind
from settlement.core.records import InputRecord, TradeValue
from settlement.core.rules import RulesConfig, Verdict, amount_of, decide
from settlement.core.topics import Topics
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.serde.encoder import SettlementEncoder

log = logging.getLogger("settlement.planner")

ValueDecoder = Callable[[bytes | None], TradeValue]


class Planner:
    """Process-wide and stateless between batches (batches may run concurrently)."""

    def __init__(
        self,
        encoder: SettlementEncoder,
        rules: RulesConfig,
        topics: Topics,
        *,
        max_record_bytes: int,
        max_message_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self._encoder = encoder
        self._rules = rules
        self._topics = topics
        self._max_record_bytes = max_record_bytes
        self._max_message_bytes = max_message_bytes
        self._settlement_limit = max_message_bytes - record_size(None, None, ())  # key + value, margin kept
        self._clock = clock

    def for_batch(self, decode: ValueDecoder, span: telemetry.BatchSpan, deadline: Deadline) -> PlanRecords:
        """`plan` bound to one batch's decoder, span and deadline: what a delivery calls when it is ready to write."""
        return lambda records, shrink: self.plan(records, decode, span, deadline, shrink)

    def plan(
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
                    single[i] = Output(settlements, record.key, value, headers, record.timestamp_ms)
                else:
                    plain_indexes.append(i)
                    plain.append((record.key, value, record.timestamp_ms))  # type: ignore[arg-type]  # admitted
                continue
            outcomes.append(poison)
            single[i] = self.dead_letter(record, poison, SHRUNK if shrink and record.coordinates in shrink else None)
        return plan

    def dead_letter(self, record: InputRecord, poison: PoisonRecord, max_bytes: int | None = None) -> Output:
        """The record's dead letter (shrunk to a prefix with `max_bytes` `SHRUNK`)."""
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
