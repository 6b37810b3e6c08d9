"""The settlement core: pure decisions with no I/O (no client, no azure.functions; the clock only through `Deadline`).

Errors and poison kinds, the record shapes, admission, the rules, dead-letter building, the batch plan and the
`Delivery` seam, the exactly-once position decisions, the ledger's names, liveness, the NCRONTAB schedule and what a
token says about itself. Everything above may import it; it imports nothing of ours but `settlement.schemas`
(generated), so each decision is table-tested without a broker.

Its surface is `__all__` below: code outside `settlement/` imports these names from `settlement.core`, never a module
inside it (an import-linter contract holds it to that). The layers above import its modules directly.
"""

from settlement.core.admission import admit
from settlement.core.deadletter import (
    BROKER_REFUSED,
    DETAIL,
    FAILED_AT,
    HEADERS,
    ORIGINAL_HEADERS_BYTES,
    ORIGINAL_KEY_BYTES,
    ORIGINAL_KEY_SHA256,
    ORIGINAL_VALUE_BYTES,
    ORIGINAL_VALUE_SHA256,
    PRODUCER_REFUSED,
    REASON,
    SHRUNK,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TIMESTAMP,
    SOURCE_TOPIC,
    dead_letter,
    refused_as_too_large,
)
from settlement.core.deadline import Deadline
from settlement.core.errors import ConfigError, DeliveryError, PoisonRecord, RetryBatch, TransientError
from settlement.core.liveness import Action, Offsets, Sighting, action_for, sight, stall_after_s
from settlement.core.naming import settled_group, transactional_id
from settlement.core.plan import BatchResult, Delivery, Outcome, Output, Plan, PlanRecords, RecordResult, SettleBatch
from settlement.core.poison import PoisonKind
from settlement.core.positions import Step, Unsettled, commit_due, step, unsettled
from settlement.core.records import INT32, READ_COLUMNS, InputRecord, TradeValue, host_key, parse_timestamp
from settlement.core.rules import Disposition, Reason, RulesConfig, Verdict, amount_of, decide
from settlement.core.schedule import longest_interval_s, next_after, normalized
from settlement.core.topics import Topics

__all__ = [
    "BROKER_REFUSED",
    "DETAIL",
    "FAILED_AT",
    "HEADERS",
    "INT32",
    "ORIGINAL_HEADERS_BYTES",
    "ORIGINAL_KEY_BYTES",
    "ORIGINAL_KEY_SHA256",
    "ORIGINAL_VALUE_BYTES",
    "ORIGINAL_VALUE_SHA256",
    "PRODUCER_REFUSED",
    "READ_COLUMNS",
    "REASON",
    "SHRUNK",
    "SOURCE_OFFSET",
    "SOURCE_PARTITION",
    "SOURCE_TIMESTAMP",
    "SOURCE_TOPIC",
    "Action",
    "BatchResult",
    "ConfigError",
    "Deadline",
    "Delivery",
    "DeliveryError",
    "Disposition",
    "InputRecord",
    "Offsets",
    "Outcome",
    "Output",
    "Plan",
    "PlanRecords",
    "PoisonKind",
    "PoisonRecord",
    "Reason",
    "RecordResult",
    "RetryBatch",
    "RulesConfig",
    "SettleBatch",
    "Sighting",
    "Step",
    "Topics",
    "TradeValue",
    "TransientError",
    "Unsettled",
    "Verdict",
    "action_for",
    "admit",
    "amount_of",
    "commit_due",
    "dead_letter",
    "decide",
    "host_key",
    "longest_interval_s",
    "next_after",
    "normalized",
    "parse_timestamp",
    "refused_as_too_large",
    "settled_group",
    "sight",
    "stall_after_s",
    "step",
    "transactional_id",
    "unsettled",
]
