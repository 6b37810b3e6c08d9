"""The invariants between our settings and the host's that the documented guarantees rest on, checked when
the host indexes the app, so that a setting which would break one fails start-up naming it.

- A batch that keeps failing must give its partition back before the consumer is evicted: the longest it
  can hold it without polling, (maxRetries + 1) * [(retries + 1) * invocation + the longest back-offs], stays
  below `maxPollIntervalMs` (host.json). Past it the partition moves, every retry counter starts again, and a
  batch that always fails is never skipped: the partition stalls for good (docs: "Retries and the poll
  interval").
- One invocation (the batch deadline, plus at most one registry request past it) ends before the host's
  `functionTimeout` kills it, which would leave its delivery unknown.
- The exactly-once transaction timeout (the commit interval plus one batch's deadline plus a margin) stays
  within the broker's default `transaction.max.timeout.ms` (15 min), or `init_transactions` is refused.

The formula is the Kafka extension's retry loop as localrun/platform/extension.py models it (extension 4.3.x); the
retry policy's intervals are declared here and used by function_app.py's `@app.retry`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from settlement.core.errors import ConfigError

RETRY_MINIMUM_S = 5  # @app.retry exponential back-off, first delay
RETRY_MAXIMUM_S = 60  # and its cap
JITTER = 0.2  # the host randomizes each exponential delay by ±20 %
# A registry request may take this share of the batch deadline, and is retried this often (`Settings.registry_conf`):
# a registry that accepts the connection and never answers fails the batch for retry instead of hanging it.
REGISTRY_SHARE = 0.25
REGISTRY_RETRIES = 1
# An invocation takes at most its delivery deadline plus one registry request past it (its share, retried).
INVOCATION_FACTOR = 1 + REGISTRY_SHARE * (1 + REGISTRY_RETRIES)
BROKER_MAX_TRANSACTION_TIMEOUT_MS = 900_000  # Kafka's default transaction.max.timeout.ms
TRANSACTION_FLOOR_MS = 60_000  # the least transaction timeout the ledger asks for
TRANSACTION_MARGIN_MS = 10_000  # above the commit interval plus one batch's deadline
HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
# The Kafka extension's defaults for keys host.json leaves out (4.3.x KafkaOptions); localrun's model of the
# extension (localrun/platform/extension.py) takes them from here.
DEFAULT_MAX_RETRIES = 5
DEFAULT_COMMIT_ON_FAILURE = True
DEFAULT_MAX_POLL_INTERVAL_MS = 300_000
_EXTENSION_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "maxretries": DEFAULT_MAX_RETRIES,
        "commitonfailure": DEFAULT_COMMIT_ON_FAILURE,
        "maxpollintervalms": DEFAULT_MAX_POLL_INTERVAL_MS,
    }
)
_DEFAULT_FUNCTION_TIMEOUT_S = 1800.0  # Premium and Flex Consumption's default


def registry_timeout_s(delivery_timeout_s: float) -> float:
    """The longest one registry request may take (at least 1 s)."""
    return max(1.0, delivery_timeout_s * REGISTRY_SHARE)


def transaction_needs_ms(delivery_timeout_s: float, commit_interval_s: float) -> int:
    """How long an exactly-once transaction can stay open: the commit interval plus one batch's deadline, and a
    margin, so the coordinator aborts one only when its holder went silent."""
    return int(delivery_timeout_s * 1000) + int(commit_interval_s * 1000) + TRANSACTION_MARGIN_MS


def transaction_timeout_ms(delivery_timeout_s: float, commit_interval_s: float) -> int:
    """The ledger's `transaction.timeout.ms`: what a transaction needs, at least the floor, within the broker's
    default maximum (`check` refuses settings that need more)."""
    needs = transaction_needs_ms(delivery_timeout_s, commit_interval_s)
    return min(BROKER_MAX_TRANSACTION_TIMEOUT_MS, max(TRANSACTION_FLOOR_MS, needs))


def read_host_json(path: Path = HOST_JSON) -> dict[str, Any]:
    """host.json, parsed: the one reader of it (the invariants here, and localrun's model of the host)."""
    host: dict[str, Any] = json.loads(path.read_text())
    return host


def kafka_extension(host: Mapping[str, Any]) -> dict[str, Any]:
    """host.json's `extensions.kafka`, keys lower-cased (the host binds them case-insensitively)."""
    return {k.lower(): v for k, v in host.get("extensions", {}).get("kafka", {}).items()}


def interval(seconds: int) -> str:
    """A retry interval as `@app.retry` takes it (hh:mm:ss)."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def worst_case_s(executions: float, retries: int, invocation_s: float) -> float:
    """Longest one batch keeps its consumer from polling: `executions` (the extension's maxRetries + 1, or 1
    with commitOnFailure) of `retries` + 1 invocations each, and every back-off at its longest randomized
    delay. Infinite for a count of -1 (retry forever)."""
    if retries < 0 or executions < 0 or math.isinf(executions):
        return math.inf
    longest = [
        min(RETRY_MAXIMUM_S, min(RETRY_MAXIMUM_S, RETRY_MINIMUM_S * 2**a) * (1 + JITTER)) for a in range(retries)
    ]
    return executions * ((retries + 1) * invocation_s + sum(longest))


@dataclass(frozen=True)
class HostLimits:
    """What host.json sets that our settings must fit within."""

    executions: float  # executions of a failing batch before it is skipped (inf: never skipped)
    max_poll_interval_ms: int
    function_timeout_s: float

    @classmethod
    def from_host_json(cls, path: Path = HOST_JSON) -> HostLimits:
        host = read_host_json(path)
        merged = {**_EXTENSION_DEFAULTS, **kafka_extension(host)}
        retries = int(merged["maxretries"])
        executions = 1.0 if bool(merged["commitonfailure"]) else (math.inf if retries < 0 else float(retries + 1))
        return cls(executions, int(merged["maxpollintervalms"]), _timespan_s(host.get("functionTimeout")))


def _timespan_s(value: object) -> float:
    """A host.json timespan ("00:10:00", "-1" for none) in seconds."""
    if value is None:
        return _DEFAULT_FUNCTION_TIMEOUT_S
    text = str(value).strip()
    if text == "-1":
        return math.inf
    m = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if m is None:
        raise ConfigError("host.json functionTimeout", f"{text!r} is not a timespan (hh:mm:ss)")
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def check(max_retries: int, delivery_timeout_s: float, commit_interval_s: float, host: HostLimits) -> None:
    """Raise `ConfigError` naming the setting that would break an invariant of the module docstring."""
    invocation_s = INVOCATION_FACTOR * delivery_timeout_s
    if invocation_s >= host.function_timeout_s:
        raise ConfigError(
            "SETTLEMENT_DELIVERY_TIMEOUT_SECONDS",
            f"{delivery_timeout_s:g} s makes an invocation last up to {invocation_s:g} s, not within host.json's "
            f"functionTimeout of {host.function_timeout_s:g} s "
            f"(at most {host.function_timeout_s / INVOCATION_FACTOR:g} s)",
        )
    bound_s = host.max_poll_interval_ms / 1000
    worst = worst_case_s(host.executions, max_retries, invocation_s)
    if worst >= bound_s:
        why = "retries forever" if math.isinf(worst) else f"a failing batch can hold its partition {worst:g} s"
        raise ConfigError(
            "SETTLEMENT_MAX_RETRIES" if max_retries < 0 or not math.isinf(worst) else "host.json maxRetries",
            f"{max_retries}: {why}, past host.json's maxPollIntervalMs of {bound_s:g} s (the consumer would be "
            "evicted and a batch that always fails would stall its partition for good); lower it, or "
            "SETTLEMENT_DELIVERY_TIMEOUT_SECONDS",
        )
    txn_ms = transaction_needs_ms(delivery_timeout_s, commit_interval_s)
    if txn_ms > BROKER_MAX_TRANSACTION_TIMEOUT_MS:
        raise ConfigError(
            "SETTLEMENT_DELIVERY_TIMEOUT_SECONDS",
            f"{delivery_timeout_s:g} s with SETTLEMENT_COMMIT_INTERVAL_MS {commit_interval_s * 1000:g} needs a "
            f"transaction timeout of {txn_ms / 1000:g} s, over the broker's default transaction.max.timeout.ms "
            f"of {BROKER_MAX_TRANSACTION_TIMEOUT_MS / 1000:g} s",
        )
