"""At-least-once delivery: a batch's plan produced through the shared producer, then every acknowledgement awaited.
A retried batch may write its records again; nothing is skipped. The exactly-once ledger (exactly_once/) is the
other delivery behind the same seam (`settlement.core.plan.Delivery`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from settlement.core.deadletter import BROKER_REFUSED, PRODUCER_REFUSED, SHRUNK, refused_as_too_large
from settlement.core.deadline import Deadline
from settlement.core.errors import DeliveryError
from settlement.core.plan import Outcome, Plan, PlanRecords
from settlement.core.records import InputRecord
from settlement.core.topics import Topics
from settlement.delivery.planner import Planner
from settlement.delivery.producer import DeliveryTracker, RecordTooLarge

log = logging.getLogger("settlement.at_least_once")


class AtLeastOnce:
    def __init__(self, tracker_factory: Callable[[], DeliveryTracker], topics: Topics, planner: Planner) -> None:
        """`tracker_factory` gives each batch its tracker on the shared producer (`SharedProducer.tracker`: looked up
        per batch, so that after a fatal error the next batch gets a new producer)."""
        self._tracker_factory = tracker_factory
        self._topics = topics
        self._planner = planner

    def close(self) -> None:
        """Nothing of its own to release: the shared producer is the composition root's."""

    def settle(
        self, records: Sequence[InputRecord], plan_records: PlanRecords, deadline: Deadline, attempts: int = 1
    ) -> list[Outcome]:
        """Each record's outcome, its output acknowledged (`attempts` is the exactly-once path's: unused here)."""
        plan = plan_records(records, ())
        self._deliver(records, plan, deadline)
        return plan.outcomes

    def _deliver(self, records: Sequence[InputRecord], plan: Plan, deadline: Deadline) -> None:
        """Produce every planned record and wait for the batch's own acknowledgements. A record the producer
        or the broker refuses as too large is replaced by its shrunk dead letter (nothing of it was written),
        so size never fails a batch after part of it was produced."""
        tracker = self._tracker_factory()
        for i, item in plan.single.items():
            try:
                tracker.produce(
                    item.topic, item.key, item.value, item.headers, deadline, index=i, timestamp=item.timestamp
                )
            except RecordTooLarge as exc:
                self._produce_shrunk(tracker, records, plan, i, deadline, f"{PRODUCER_REFUSED} ({exc})")
        if plan.plain:
            settlements = self._topics.settlements
            for i in tracker.produce_plain(settlements, plan.plain_indexes, plan.plain, deadline):
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
        item = plan.single[i] = self._planner.dead_letter(records[i], poison, max_bytes=SHRUNK)
        tracker.produce(item.topic, item.key, item.value, item.headers, deadline, index=i, timestamp=item.timestamp)
