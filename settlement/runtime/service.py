"""The process-wide settlement service: settings, registry client, decoder, encoder and the static producer, built
once on first use and reused by every invocation of every entry path (Kafka trigger, HTTP sink path).

Built lazily rather than at import so that a bad setting fails the first invocation with a clear
`ConfigError` instead of breaking function indexing (where the host would hide the message), and so that
importing `function_app` stays cheap for cold starts. `warm_start` builds it in the background right after
the import instead: the host joins the consumer group before it sends the first batch, which leaves time
to build the clients and resolve both schemas, so the first batch costs about what a warm one does.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from settlement.core.errors import ConfigError, RetryBatch
from settlement.core.liveness import stall_after_s
from settlement.core.plan import Delivery
from settlement.delivery.at_least_once import AtLeastOnce
from settlement.delivery.batch import SettlementProcessor
from settlement.delivery.exactly_once import ExactlyOnce
from settlement.delivery.ledger import Ledger, LedgerConfig
from settlement.delivery.planner import Planner
from settlement.delivery.producer import DeliveryTracker, build_config, max_message_bytes, on_error, shared_producer
from settlement.delivery.repair import Repair
from settlement.runtime.config import Settings, load_settings, source_topic
from settlement.runtime.identity import ManagedIdentityTokens, TokenUnavailable
from settlement.runtime.limits import transaction_timeout_ms
from settlement.runtime.sink import HttpLimits
from settlement.serde.decoder import TradeDecoder
from settlement.serde.encoder import SettlementEncoder

log = logging.getLogger("settlement.service")
_lock = threading.Lock()
_processor: SettlementProcessor | None = None
_settings: Settings | None = None
_repair: Repair | None = None
_tokens: ManagedIdentityTokens | None = None
# librdkafka's words for a broker that refused our credentials.
_REFUSED = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})


def with_identity(settings: Settings, tokens: ManagedIdentityTokens | None = None) -> Settings:
    """The settings with the process's managed identity tokens plugged into every client that signs in with
    them (KAFKA_AUTH / SCHEMA_REGISTRY_AUTH entra); unchanged when none does. A token is had first, here, so that
    an identity that cannot give one fails now with its cause (`TokenUnavailable`, a retried batch) instead of
    each client waiting ten seconds for a token its callback cannot get."""
    global _tokens
    if settings.entra is None or not (settings.kafka_entra or settings.registry_entra):
        return settings
    if tokens is None:
        if _tokens is None or _tokens.settings != settings.entra:
            _tokens = ManagedIdentityTokens(settings.entra)
        tokens = _tokens
    tokens.token()

    def on_client_error(err: KafkaError) -> None:
        if err.code() in _REFUSED:
            tokens.refused("the broker", err.str())
        on_error(err)

    return replace(
        settings,
        kafka_oauth_cb=tokens.oauth_cb if settings.kafka_entra else None,
        kafka_error_cb=on_client_error if settings.kafka_entra else None,
        registry_bearer=tokens.registry_fields if settings.registry_entra else None,
    )


def current_tokens() -> ManagedIdentityTokens | None:
    """The process's managed identity tokens, if its clients use them (reports read the counts)."""
    return _tokens


@contextmanager
def diagnosed() -> Iterator[None]:
    """A batch's failure with the sign-in's cause added, when our managed identity's token is why: the
    endpoint gave none, or a broker or the registry refused it (settlement/runtime/identity.py `explain`)."""
    try:
        yield
    except TokenUnavailable:
        raise
    except RetryBatch as exc:
        tokens = _tokens
        if tokens is None:
            raise
        text = str(exc)
        if "HTTP 401" in text or "HTTP 403" in text:
            tokens.refused("the Schema Registry", text[text.index("HTTP 40") :][:120])
        why = tokens.explain()
        if why is None:
            raise
        raise type(exc)(f"{text}; sign-in: {why}") from None


def build_processor(settings: Settings) -> SettlementProcessor:
    """Wire a processor from settings (tests call this directly with their own settings)."""
    settings = with_identity(settings)
    # The producer first: librdkafka connects, fetches metadata and its idempotent producer id in its own
    # threads while this one builds the registry client (an HTTP client with its TLS context) and decodes.
    try:
        producer_conf = build_config(
            settings.producer_conf(),
            settings.producer_config,
            delivery_timeout_ms=int(settings.delivery_timeout_s * 1000),
        )
    except ValueError as exc:  # our own durability check
        raise ConfigError("KAFKA_PRODUCER_CONFIG", _masked(str(exc), settings.producer_config)) from None
    try:
        producer = shared_producer(producer_conf)  # built now so that a bad setting fails the first invocation
    except KafkaException as exc:
        raise ConfigError("KAFKA_PRODUCER_CONFIG", _redacted(exc, settings.producer_config)) from None
    _warm_metadata(producer, settings.topics.settlements)
    try:
        registry = SchemaRegistryClient(settings.registry_conf())
    except Exception as exc:  # noqa: BLE001 - the client raises ValueError/TypeError/others for bad settings
        raise ConfigError("SCHEMA_REGISTRY_CONFIG", _redacted(exc, settings.registry_config)) from None
    encoder = SettlementEncoder(registry, settings.topics.settlements, settings.auto_register_schemas)
    encoder.prefetch()
    planner = Planner(
        encoder,
        settings.rules,
        settings.topics,
        max_record_bytes=settings.max_record_bytes,
        max_message_bytes=max_message_bytes(producer_conf),
        clock=time.time,
    )
    ledger = _ledger(settings, producer_conf) if settings.exactly_once else None
    delivery: Delivery
    if ledger is None:
        # The shared producer is looked up per batch: after a fatal error it is rebuilt for the next one.
        delivery = AtLeastOnce(lambda: DeliveryTracker(shared_producer(producer_conf)), settings.topics, planner)
    else:
        delivery = ExactlyOnce(ledger, settings.topics)
    return SettlementProcessor(TradeDecoder(registry), planner, delivery, settings.delivery_timeout_s, ledger)


def _ledger(settings: Settings, producer_conf: Mapping[str, Any]) -> Ledger:
    """The exactly-once ledger. A transaction stays open for at most the commit interval plus one batch's
    deadline, so the coordinator's timeout (which aborts a transaction whose holder went silent) sits above
    that, within the broker's default 15-minute `transaction.max.timeout.ms`."""
    txn_timeout_ms = transaction_timeout_ms(settings.delivery_timeout_s, settings.commit_interval_s)
    conf = {**producer_conf, "transaction.timeout.ms": txn_timeout_ms, "client.id": "trade-settlement-txn"}
    config = LedgerConfig(
        settings.ledger_group, settings.commit_interval_s, timeout_s=min(30.0, settings.delivery_timeout_s)
    )
    try:
        return Ledger(config, conf, settings.consumer_conf())
    except KafkaException as exc:
        raise ConfigError("KAFKA_PRODUCER_CONFIG", _redacted(exc, settings.producer_config)) from None


def _warm_metadata(producer: Producer, topic: str) -> None:
    """Fetch the settlement topic's metadata in the background, so the first produce does not wait for it."""

    def fetch() -> None:
        try:
            producer.list_topics(topic, timeout=10)
        except KafkaException:
            return  # the first produce fetches it again and reports what is wrong

    threading.Thread(target=fetch, name="settlement-metadata-prefetch", daemon=True).start()


def _masked(text: str, secret_config: Mapping[str, Any]) -> str:
    """`text` with every value of a secret setting masked (the names of its keys stay)."""
    for value in secret_config.values():
        for shown in sorted({str(value), repr(value), json.dumps(value)}, key=len, reverse=True):
            if len(shown) >= 1:
                text = text.replace(shown, "****")
    return text


def _redacted(exc: Exception, secret_config: Mapping[str, Any]) -> str:
    """A client's complaint about a secret setting, values masked."""
    text = str(exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc)
    return f"rejected by the client ({type(exc).__name__}): {_masked(text, secret_config)}"


def repairer(env: Mapping[str, str] | None = None) -> Repair | None:
    """The process-wide repair (settlement/delivery/repair.py), built with the processor; None under
    at-least-once, where no ledger leaves anything to repair."""
    global _repair
    proc = processor(env)
    if proc.ledger is None or _settings is None:
        return None
    if _repair is None:
        with _lock:
            if _repair is None:
                settings = _settings
                _repair = Repair(
                    proc,
                    proc.ledger,
                    source_topic(os.environ if env is None else env),
                    settings.ledger_group,
                    settings.admin_conf(),
                    stall_after_s(settings.commit_interval_s),
                )
    return _repair


def http_limits(env: Mapping[str, str] | None = None) -> HttpLimits:
    """The sink connector's request limits, from the settings the process-wide processor was built with."""
    processor(env)
    assert _settings is not None
    return HttpLimits(_settings.http_max_body_bytes, _settings.http_max_records)


def current_repair() -> Repair | None:
    """The process's repair if one was built (reports read it; nothing is built here)."""
    return _repair


def processor(env: Mapping[str, str] | None = None) -> SettlementProcessor:
    """The process-wide processor, built on first call from the app settings (environment variables)."""
    global _processor, _settings
    if _processor is None:
        with _lock:
            if _processor is None:
                settings = with_identity(load_settings(os.environ if env is None else env))
                _processor = build_processor(settings)
                _settings = settings
    return _processor


def warm_start(source_topic: str | None) -> threading.Thread:
    """Build the process-wide processor in a background thread and resolve the latest `user_trades` schema,
    so that a fresh worker's first batch finds everything ready. Best effort: on any failure it stops, and
    the first invocation builds again and raises the error there, naming the setting."""

    def warm() -> None:
        try:
            proc = processor()
        except Exception as exc:  # noqa: BLE001 - reported by the first invocation, which builds again
            log.info("warm start stopped (%s); the first invocation will report it", type(exc).__name__)
            return
        if source_topic:
            proc.prefetch(f"{source_topic}-value")

    thread = threading.Thread(target=warm, name="settlement-warm-start", daemon=True)
    thread.start()
    return thread


def reset() -> None:
    """Forget the process-wide processor (tests, and the local host between runs), committing and releasing
    what its exactly-once ledger holds."""
    global _processor, _settings, _repair
    with _lock:
        if _processor is not None:
            _processor.close()
        _processor = None
        _settings = None
        _repair = None
