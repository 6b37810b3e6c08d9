"""Kafka delivery: the processor (one batch: plan, deliver, telemetry), the planner (decode → rules → encode, dead
letters), the two deliveries behind the core's `Delivery` seam (at-least-once through the shared producer; the
`exactly_once/` room), and the producer. It uses the core's decisions and serde's codecs; it reads no setting and
knows nothing of Azure (the runtime wires it, settlement/runtime/root.py).

Its surface is `__all__` below: code outside `settlement/` imports these names from `settlement.delivery`, never a
module inside it (an import-linter contract holds it to that).
"""

from settlement.delivery.at_least_once import AtLeastOnce
from settlement.delivery.batch import SettlementProcessor
from settlement.delivery.exactly_once import (
    REPAIR_LIMIT,
    ExactlyOnce,
    Fenced,
    LedgerConfig,
    PartitionRun,
    Repair,
    RepairRun,
)
from settlement.delivery.planner import Planner, ValueDecoder
from settlement.delivery.producer import (
    DURABILITY,
    LIBRDKAFKA_LOG,
    DeliveryTracker,
    RecordTooLarge,
    SharedProducer,
    build_config,
    max_message_bytes,
    on_error,
)

__all__ = [
    "DURABILITY",
    "LIBRDKAFKA_LOG",
    "REPAIR_LIMIT",
    "AtLeastOnce",
    "DeliveryTracker",
    "ExactlyOnce",
    "Fenced",
    "LedgerConfig",
    "PartitionRun",
    "Planner",
    "RecordTooLarge",
    "Repair",
    "RepairRun",
    "SettlementProcessor",
    "SharedProducer",
    "ValueDecoder",
    "build_config",
    "max_message_bytes",
    "on_error",
]
