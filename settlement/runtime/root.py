"""The composition root: the process's services, built once from the settings and handed to every entry path.

`Services` is the wiring in one place: the managed identity's tokens plugged into every client, the shared producer,
the registry client, the decoder and encoder, the planner, the delivery (at-least-once, or exactly-once over its
ledger), the processor, the sink connector's limits and, exactly-once, the repair. `Services.build(settings)` makes
one from any `Settings`: tests build their own, with other settings, and pass it to the triggers.

`Root` is one process's `Services`, built on first use from the app settings (environment variables) and reused by
every invocation of every entry path (the Kafka trigger, the HTTP sink path, the repair timer). Built lazily rather
than at import so that a bad setting fails the first invocation with a clear `ConfigError` instead of breaking
function indexing (where the host would hide the message), and so that importing `function_app` stays cheap for
cold starts. `warm_start` builds it in the background right after the import instead: the host joins the consumer
group before it sends the first batch, which leaves time to build the clients and resolve both schemas, so the first
batch costs about what a warm one does.

Where the one `Root` lives: `function_app.py` (`root = Root(os.environ)`). The Functions worker imports that module
and calls its module-level functions for each invocation, so whatever must outlive an invocation (the clients, the
producer, the ledger's open transactions) can only hang off a module global; the platform forces exactly one, and it
sits in the module the platform imports. Nothing in `settlement/` keeps state at module level
(tests/unit/test_module_state.py scans for it).
"""

from __future__ import annotations

import json
import logging
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
from settlement.delivery.exactly_once import ExactlyOnce, LedgerConfig, Repair
from settlement.delivery.planner import Planner
from settlement.delivery.producer import SharedProducer, build_config, max_message_bytes, on_error
from settlement.runtime.config import Settings, load_settings
from settlement.runtime.identity import ManagedIdentityTokens, TokenUnavailable
from settlement.runtime.limits import transaction_timeout_ms
from settlement.runtime.sink import HttpLimits
from settlement.serde.decoder import TradeDecoder
from settlement.serde.encoder import SettlementEncoder

log = logging.getLogger("settlement.service")
# librdkafka's words for a broker that refused our credentials.
_REFUSED = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})


def with_identity(settings: Settings, tokens: ManagedIdentityTokens | None) -> Settings:
    """The settings with the process's managed identity tokens plugged into every client that signs in with
    them (KAFKA_AUTH / SCHEMA_REGISTRY_AUTH entra); unchanged when none does (`tokens` may then be None). A token
    is had first, here, so that an identity that cannot give one fails now with its cause (`TokenUnavailable`, a
    retried batch) instead of each client waiting ten seconds for a token its callback cannot get."""
    if settings.entra is None or not (settings.kafka_entra or settings.registry_entra):
        return settings
    if tokens is None:
        tokens = ManagedIdentityTokens(settings.entra)
    tokens.token()
    refused_by = tokens

    def on_client_error(err: KafkaError) -> None:
        if err.code() in _REFUSED:
            refused_by.refused("the broker", err.str())
        on_error(err)

    return replace(
        settings,
        kafka_oauth_cb=tokens.oauth_cb if settings.kafka_entra else None,
        kafka_error_cb=on_client_error if settings.kafka_entra else None,
        registry_bearer=tokens.registry_fields if settings.registry_entra else None,
    )


def tokens_for(settings: Settings, held: ManagedIdentityTokens | None = None) -> ManagedIdentityTokens | None:
    """The managed identity tokens the settings' clients sign in with: `held` when it serves the same identity
    (one `ManagedIdentityTokens` per process serves every client), a new one otherwise; None without entra."""
    if settings.entra is None or not (settings.kafka_entra or settings.registry_entra):
        return None
    if held is not None and held.settings == settings.entra:
        return held
    return ManagedIdentityTokens(settings.entra)


class Services:
    """One process's services, built from one `Settings` (`build`); `close` releases them."""

    def __init__(
        self,
        settings: Settings,
        producer: SharedProducer,
        processor: SettlementProcessor,
        exactly_once: ExactlyOnce | None,
    ) -> None:
        self.settings = settings  # with the managed identity's callbacks plugged in
        self.producer = producer  # the static producer (at-least-once delivers through it)
        self.processor = processor
        self.exactly_once = exactly_once  # None under at-least-once
        self.http_limits = HttpLimits(settings.http_max_body_bytes, settings.http_max_records)
        self._lock = threading.Lock()
        self._repair: Repair | None = None

    @classmethod
    def build(cls, settings: Settings, tokens: ManagedIdentityTokens | None = None) -> Services:
        """Wire every service from `settings`; `tokens` are the process's managed identity tokens (made here when
        the settings need them and none are given). Raises `ConfigError` naming a bad setting, or
        `TokenUnavailable`."""
        settings = with_identity(settings, tokens)
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
        shared = SharedProducer(producer_conf)
        try:
            producer = shared.get()  # built now so that a bad setting fails the first invocation
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
        exactly_once = _exactly_once(settings, producer_conf) if settings.exactly_once else None
        delivery: Delivery = exactly_once or AtLeastOnce(shared.tracker, settings.topics, planner)
        processor = SettlementProcessor(TradeDecoder(registry), planner, delivery, settings.delivery_timeout_s)
        if exactly_once is not None:
            # Its committer settles a lost range again through the whole batch path: the processor's.
            exactly_once.start(processor.process)
        return cls(settings, shared, processor, exactly_once)

    def repair(self) -> Repair | None:
        """The repair of the source topic (settlement/delivery/exactly_once/repair.py), built on first use (its admin
        client and group readers are for the timer only); None under at-least-once, where no ledger leaves
        anything to repair."""
        if self.exactly_once is None:
            return None
        if self._repair is None:
            with self._lock:
                if self._repair is None:
                    settings = self.settings
                    self._repair = self.exactly_once.repair(
                        settings.source_topic,
                        settings.ledger_group,
                        settings.admin_conf(),
                        stall_after_s(settings.commit_interval_s),
                    )
        return self._repair

    def current_repair(self) -> Repair | None:
        """The repair if one was built (reports read it; nothing is built here)."""
        return self._repair

    def close(self, producer_timeout_s: float = 10.0) -> None:
        """Commit and release what the exactly-once ledger holds, then flush and drop the shared producer."""
        self.processor.close()
        self.producer.close(producer_timeout_s)


def _exactly_once(settings: Settings, producer_conf: Mapping[str, Any]) -> ExactlyOnce:
    """The exactly-once delivery over a new ledger. A transaction stays open for at most the commit interval plus
    one batch's deadline, so the coordinator's timeout (which aborts a transaction whose holder went silent) sits
    above that, within the broker's default 15-minute `transaction.max.timeout.ms`."""
    txn_timeout_ms = transaction_timeout_ms(settings.delivery_timeout_s, settings.commit_interval_s)
    conf = {**producer_conf, "transaction.timeout.ms": txn_timeout_ms, "client.id": "trade-settlement-txn"}
    config = LedgerConfig(
        settings.ledger_group, settings.commit_interval_s, timeout_s=min(30.0, settings.delivery_timeout_s)
    )
    try:
        return ExactlyOnce.open(
            config, conf, settings.consumer_conf(), settings.topics, delivery_timeout_s=settings.delivery_timeout_s
        )
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


class Root:
    """One process's `Services`, built on first use from `env` (the app settings) and kept until `reset`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env  # read when the services are built: os.environ on the platform
        self._lock = threading.Lock()
        self._services: Services | None = None
        # Kept across builds (a failed one included): they explain a refused sign-in, and one serves every client.
        self._tokens: ManagedIdentityTokens | None = None

    def services(self) -> Services:
        """The process's services, built now from the app settings if not yet; raises `ConfigError` naming a bad
        setting (or `TokenUnavailable`), and builds again on the next call."""
        services = self._services
        if services is None:
            with self._lock:
                services = self._services
                if services is None:
                    settings = load_settings(self._env)
                    self._tokens = tokens_for(settings, self._tokens)
                    services = self._services = Services.build(settings, self._tokens)
        return services

    def current(self) -> Services | None:
        """The services if they were built (reports read them; nothing is built here)."""
        return self._services

    @property
    def tokens(self) -> ManagedIdentityTokens | None:
        """The process's managed identity tokens, if its clients use them (reports read the counts)."""
        return self._tokens

    def warm_start(self, source_topic: str | None) -> threading.Thread:
        """Build the services in a background thread and resolve the latest `user_trades` schema, so that a fresh
        worker's first batch finds everything ready. Best effort: on any failure it stops, and the first invocation
        builds again and raises the error there, naming the setting."""

        def warm() -> None:
            try:
                services = self.services()
            except Exception as exc:  # noqa: BLE001 - reported by the first invocation, which builds again
                log.info("warm start stopped (%s); the first invocation will report it", type(exc).__name__)
                return
            if source_topic:
                services.processor.prefetch(f"{source_topic}-value")

        thread = threading.Thread(target=warm, name="settlement-warm-start", daemon=True)
        thread.start()
        return thread

    def reset(self, producer_timeout_s: float = 10.0) -> None:
        """Close and forget the services (tests, and the local host between runs): what the exactly-once ledger
        holds is committed and released, the shared producer flushed; the next invocation builds anew."""
        with self._lock:
            services, self._services = self._services, None
        if services is not None:
            services.close(producer_timeout_s)

    @contextmanager
    def diagnosed(self) -> Iterator[None]:
        """A batch's failure with the sign-in's cause added, when our managed identity's token is why: the
        endpoint gave none, or a broker or the registry refused it (settlement/runtime/identity.py `explain`)."""
        try:
            yield
        except TokenUnavailable:
            raise
        except RetryBatch as exc:
            tokens = self._tokens
            if tokens is None:
                raise
            text = str(exc)
            if "HTTP 401" in text or "HTTP 403" in text:
                tokens.refused("the Schema Registry", text[text.index("HTTP 40") :][:120])
            why = tokens.explain()
            if why is None:
                raise
            raise type(exc)(f"{text}; sign-in: {why}") from None
