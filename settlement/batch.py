"""One batch: decode → settle → encode every record, then produce, then wait for every acknowledgement.

Decoding and encoding all records before producing any means a registry outage fails the batch with nothing
written, so the retry does not duplicate half a batch. Poison records never fail the batch: each becomes one
dead-letter record. Invariant: every input record ends as exactly one settlement or one dead-letter record,
and the function returns only when all of them are acknowledged.
"""

from __future__ import annotations

import logging
import operator
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from settlement import telemetry
from settlement.deadletter import dead_letter, record_size
from settlement.poison import PoisonKind, PoisonRecord
from settlement.producer import DeliveryError, DeliveryTracker, RecordTooLarge
from settlement.records import InputRecord
from settlement.rules import RulesConfig, verdict
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.schemas.user_trade_pb2 import UserTrade
from settlement.serde import SettlementEncoder, TradeDecoder, TransientError

log = logging.getLogger("settlement.batch")

ValueDecoder = Callable[[bytes | None], UserTrade]

SETTLED = "settled"
DEAD_LETTERED = "dead-lettered"


@dataclass(frozen=True)
class Topics:
    settlements: str
    dead_letter: str


class RecordResult(NamedTuple):
    """What became of one input record; the HTTP path returns these aligned with its request."""

    coordinates: str
    outcome: str  # SETTLED or DEAD_LETTERED
    disposition: str | None
    reason: str


class _Planned(NamedTuple):
    """One output record and what it means for its input: a single tuple per record on the hot path (the
    `RecordResult`s are built only when someone asks for them)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    coordinates: str
    outcome: str
    disposition: str | None
    reason: str


_DISPOSITION = operator.itemgetter(6)
_OUTCOME = operator.itemgetter(5)


class BatchResult:
    """What became of a batch's records, in input order."""

    def __init__(self, planned: Sequence[_Planned]) -> None:
        self._planned = planned
        # Counted in C (map + itemgetter + Counter): no Python-level step per record.
        self.dispositions: Counter[str] = Counter(map(_DISPOSITION, planned))
        self.dispositions.pop(None, None)  # type: ignore[call-overload]  # dead letters have no disposition
        self.settled = sum(self.dispositions.values())
        self.dead_lettered = len(planned) - self.settled
        self.reasons: Counter[str] = Counter(
            p.reason for p in planned if p.outcome == DEAD_LETTERED
        ) if self.dead_lettered else Counter()

    @property
    def results(self) -> list[RecordResult]:
        return [RecordResult(p.coordinates, p.outcome, p.disposition, p.reason) for p in self._planned]


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
        clock: Callable[[], float] = time.time,
        max_message_bytes: int = 1_000_000,
    ) -> None:
        self._decoder = decoder
        self._encoder = encoder
        self._rules = rules
        self._topics = topics
        self._tracker_factory = tracker_factory
        self._timeout_s = delivery_timeout_s
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        self._settlement_limit = max_message_bytes - record_size(None, None, ())  # key + value, margin kept

    @property
    def decoder(self) -> TradeDecoder:
        return self._decoder

    def process(self, records: Sequence[InputRecord], decode: ValueDecoder | None = None) -> BatchResult:
        """Settle a batch; raises (so the host retries it) on delivery or registry failure.

        `decode` turns a record value into a `UserTrade` (or raises `PoisonRecord`); by default the value is
        Confluent-framed Protobuf resolved through the Schema Registry. The HTTP sink path passes its own.
        """
        started = time.monotonic()
        deadline = started + self._timeout_s
        decode = decode or self._decoder.for_batch()
        with telemetry.batch_span(records) as span:
            planned: list[_Planned] = []
            for record in records:
                if time.monotonic() > deadline:
                    # Registry lookups are bounded one by one; many slow ones must still not outlive the batch.
                    raise TransientError(
                        f"batch deadline passed after planning {len(planned)} of {len(records)} records"
                    )
                planned.append(self._plan(record, decode, span))
            self._deliver(records, planned, deadline)
            result = BatchResult(planned)
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

    def _deliver(self, records: Sequence[InputRecord], planned: list[_Planned], deadline: float) -> None:
        """Produce every planned record and wait for the batch's own acknowledgements. A record the producer
        or the broker refuses as too large is replaced by its shrunk dead letter (nothing of it was written),
        so size never fails a batch after part of it was produced."""
        tracker = self._tracker_factory()
        plain: dict[str, tuple[list[int], list[dict[str, bytes | None]]]] = {}
        for i, item in enumerate(planned):
            if item.headers or item.value is None:
                try:
                    tracker.produce(item.topic, item.key, item.value, item.headers, deadline, index=i)
                except RecordTooLarge as exc:
                    detail = f"the producer refused it as too large ({exc})"
                    self._produce_shrunk(tracker, records, planned, i, deadline, detail)
            else:
                indexes, messages = plain.get(item.topic) or plain.setdefault(item.topic, ([], []))
                indexes.append(i)
                messages.append({"key": item.key, "value": item.value})
        for topic, (indexes, messages) in plain.items():
            for i in tracker.produce_batch(topic, indexes, messages, deadline):
                self._produce_shrunk(tracker, records, planned, i, deadline, "the producer refused it as too large")
        refused = tracker.wait(deadline)
        if not refused:
            return
        for i in refused:
            detail = "the broker refused it as too large for the topic"
            self._produce_shrunk(tracker, records, planned, i, deadline, detail)
        if tracker.wait(deadline):
            raise DeliveryError("the broker refused even the shrunk dead letters of oversize records")

    def _produce_shrunk(
        self,
        tracker: DeliveryTracker,
        records: Sequence[InputRecord],
        planned: list[_Planned],
        i: int,
        deadline: float,
        detail: str,
    ) -> None:
        """Replace record `i`'s plan with its shrunk dead letter and hand that to the producer."""
        planned[i] = item = self._shrunk(records[i], detail)
        tracker.produce(item.topic, item.key, item.value, item.headers, deadline, index=i)

    def _shrunk(self, record: InputRecord, detail: str) -> _Planned:
        log.warning("dead-lettering %s shrunk: %s", record.coordinates, detail)
        return self._dead_letter(record, PoisonRecord(PoisonKind.OVERSIZE, detail), max_bytes=0)

    def _plan(self, record: InputRecord, decode: ValueDecoder, span: telemetry.BatchSpan) -> _Planned:
        try:
            return self._settle(record, decode, span)
        except PoisonRecord as poison:
            log.warning("dead-lettering %s: %s", record.coordinates, poison)
            return self._dead_letter(record, poison)
        except TransientError:
            raise
        except Exception as exc:  # one record's surprise must not block its partition forever
            log.exception("dead-lettering %s: unexpected %s", record.coordinates, type(exc).__name__)
            return self._dead_letter(record, PoisonRecord(PoisonKind.UNSETTLEABLE, f"{type(exc).__name__}: {exc}"))

    def _dead_letter(self, record: InputRecord, poison: PoisonRecord, max_bytes: int | None = None) -> _Planned:
        limit = self._max_message_bytes if max_bytes is None else max_bytes
        key, value, headers = dead_letter(record, poison, self._clock(), limit)
        return _Planned(
            self._topics.dead_letter, key, value, headers, record.coordinates, DEAD_LETTERED, None, poison.kind.value
        )

    def _settle(self, record: InputRecord, decode: ValueDecoder, span: telemetry.BatchSpan) -> _Planned:
        coordinates = record.coordinates  # the SEC-sample identity and the result's name: built once
        user = _user(record.key)
        if record.timestamp_ms is None:
            raise PoisonRecord(PoisonKind.NO_TIMESTAMP, "the record carries no Kafka timestamp")
        trade = decode(record.value)
        symbol, quantity, price = trade.symbol, trade.quantity, trade.price
        amount = float(quantity) * float(price)
        disposition, reason = verdict(
            user,
            trade.regionid if trade.HasField("regionid") else None,
            quantity,
            symbol,
            price,
            amount,
            coordinates,
            self._rules,
        )
        settlement = TradeSettlement(
            user=user or "",
            symbol=symbol,
            amount=amount,
            disposition=disposition,  # StrEnum members are str: no .value lookups per record
            reason=reason,
            timestamp=record.timestamp_ms,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
        )
        value = self._encoder.encode(settlement)
        if len(value) + len(record.key or b"") > self._settlement_limit:
            raise PoisonRecord(
                PoisonKind.OVERSIZE,
                f"its settlement would be {len(value) + len(record.key or b'')} bytes with the key, over the "
                f"producer's message.max.bytes {self._max_message_bytes}",
            )
        return _Planned(
            self._topics.settlements,
            record.key,
            value,
            span.output_headers(record.headers),
            coordinates,
            SETTLED,
            disposition,
            reason,
        )


def _user(key: bytes | None) -> str | None:
    """The USERID key as text; None for a null or empty key (the "no user" case).

    The Kafka trigger delivers keys as text (keyDataType String): bytes that are not UTF-8 arrive replaced
    by U+FFFD, so the original user id is gone. Settling such a trade would book it to a mangled user, so
    it is dead-lettered as bad-key (with the key as delivered) instead.
    """
    if not key:
        return None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        text = "\ufffd"
    if "\ufffd" in text:
        raise PoisonRecord(PoisonKind.BAD_KEY, "record key was not UTF-8 text (the host replaced bytes with U+FFFD)")
    return text
