"""The Azure seam: `azure.functions` event types in, `InputRecord`s out, each entry path's body run against the
process's composition root (settlement/runtime/root.py) that `function_app.py` passes in. Kept thin so that
everything behind it is testable without the Functions host. The one module of ours that imports `azure.functions`
(an import-linter contract holds every other to it)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Sequence
from typing import Any

import azure.functions as func
from azure.functions.decorators.kafka import OAuthBearerMethod
from azure.functions.decorators.utils import StringifyEnum
from confluent_kafka import KafkaException

import settlement.runtime.sink as sink
from settlement.core.plan import BatchResult
from settlement.core.records import InputRecord, host_key, parse_timestamp
from settlement.runtime.config import TriggerSettings
from settlement.runtime.root import Root

log = logging.getLogger("settlement.triggers")


def _headers(raw: object) -> tuple[tuple[str, bytes], ...]:
    """The extension's headers (`[{"Key": name, "Value": base64}]`) as (name, bytes) pairs; unreadable
    entries are dropped rather than failing the record: headers are context, not the trade."""
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("Key"), str):
            continue
        value = item.get("Value")
        try:
            out.append((item["Key"], base64.b64decode(value, validate=True) if isinstance(value, str) else b""))
        except (binascii.Error, ValueError):
            continue
    return tuple(out)


class _ExtensionAuthMode(StringifyEnum):
    """The extension's `BrokerAuthenticationMode.OAuthBearer` (4.0.0+), which azure-functions' own enum (1.26)
    lacks: its decorator refuses the string "OAuthBearer" but passes an enum member through, and the binding JSON
    then carries the member's name, as it does "PLAIN" for its own (the host parses enum names without case)."""

    OAUTHBEARER = 4


def trigger_auth(trigger: TriggerSettings) -> dict[str, Any]:
    """The Kafka trigger decorator's authentication arguments for the configured mode: the mode, and as
    `%SETTING%` expressions only the credentials that mode reads (config.load_trigger_settings checked them)."""
    if trigger.authentication_mode == "OAuthBearer":
        return {
            "authentication_mode": _ExtensionAuthMode.OAUTHBEARER,
            "o_auth_bearer_method": OAuthBearerMethod.OIDC,
            **trigger.credentials,
        }
    return {"authentication_mode": trigger.authentication_mode, **trigger.credentials}


def from_kafka_event(event: func.KafkaEvent) -> InputRecord:
    """One event as the worker built it from the host's data (see localrun/platform/invocation.py for that shape).
    Each of the event's properties is read once: this runs per record, before any settling."""
    partition, offset = event.partition, event.offset
    return InputRecord(
        host_key(event.key),
        event.get_body(),
        event.topic or "",
        -1 if partition is None else int(partition),
        -1 if offset is None else int(offset),
        parse_timestamp(event.timestamp),
        _headers(event.headers),
    )


def settle_kafka_events(root: Root, events: Sequence[func.KafkaEvent]) -> BatchResult:
    """The Kafka trigger's body: settle the batch or raise so the host retries it before moving the offset."""
    with root.diagnosed():
        return root.services().processor.process([from_kafka_event(e) for e in events])


def settle_http_request(root: Root, req: func.HttpRequest) -> func.HttpResponse:
    """The sink connector's HTTP function body: per-record results, 400 for a malformed body, 503 to retry."""
    try:
        services = root.services()
    except Exception as exc:  # noqa: BLE001 - a bad setting: name it, and let the connector retry once fixed
        return func.HttpResponse(
            json.dumps({"error": f"not settled, retry the batch: {exc}"}), status_code=503, mimetype="application/json"
        )
    status, payload = sink.handle(req.get_body(), services.processor, services.http_limits)
    return func.HttpResponse(json.dumps(payload), status_code=status, mimetype="application/json")


def repair_on_timer(root: Root, timer: func.TimerRequest) -> None:
    """The repair timer's body (settlement/delivery/exactly_once/repair.py): one run within the batch deadline. Under
    at-least-once there is no ledger and nothing to repair. A run's failure is logged, not raised: the timer is not
    retried, and the next run starts from what Kafka shows then."""
    services = root.services()
    repair = services.repair()
    if repair is None:
        return
    if timer.past_due:
        log.info("repair timer past due: a run was late or the instance was busy")
    try:
        repair.run(services.processor.delivery_timeout_s)
    except KafkaException as exc:  # the cluster cannot answer now (a broker restart, a leader election)
        log.warning("repair run stopped, the next run tries again: %s", exc)
    except Exception:
        log.exception("repair run failed; the next run tries again")
