"""All app settings, read and validated once per process, with errors that name the setting.

A missing or malformed setting fails the first invocation with `ConfigError("SETTING: what is wrong")`.
Secret settings never appear in an error or a repr: errors name the setting, never echo its value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from settlement.batch import Topics
from settlement.errors import ConfigError
from settlement.rules import DEFAULT_LARGE_TRADE_LIMIT, DEFAULT_SEC_SAMPLE_RATE, RulesConfig
from settlement.secrets import Secret, SecretNotFound, SecretSource, secret_name_for

# A batch's deadline. With host.json's retries it bounds how long one batch can hold its partition without
# polling (README "Retries and the poll interval"); tests/unit/test_extension.py keeps that below the bound.
DEFAULT_DELIVERY_TIMEOUT_S = 30.0
SECRET_SETTINGS = ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_PRODUCER_CONFIG", "SCHEMA_REGISTRY_CONFIG")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
EXACTLY_ONCE = "exactly-once"
AT_LEAST_ONCE = "at-least-once"
GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)
# How long a partition's transaction stays open across batches (README "Delivery guarantees"): what a
# read_committed reader waits at most beyond at-least-once, against a few ms of commit per interval.
DEFAULT_COMMIT_INTERVAL_MS = 300
_UNRESOLVED_REFERENCE = "@Microsoft.KeyVault("


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str
    security_protocol: str
    sasl_username: Secret | None
    sasl_password: Secret | None
    producer_config: dict[str, Any] = field(repr=False)
    registry_url: str = ""
    registry_config: dict[str, Any] = field(default_factory=dict, repr=False)
    topics: Topics = field(default_factory=lambda: Topics("trade-settlements", "user_trades-dlq"))
    rules: RulesConfig = field(default_factory=RulesConfig)
    max_record_bytes: int = 65_536
    delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S
    auto_register_schemas: bool = True
    http_max_body_bytes: int = 32 * 1024 * 1024
    http_max_records: int = 10_000
    guarantee: str = EXACTLY_ONCE
    ledger_group: str = ""  # the trigger's consumer group; the ledger's names derive from it
    commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_MS / 1000

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == EXACTLY_ONCE

    def consumer_conf(self) -> dict[str, Any]:
        """librdkafka connection settings for the ledger's consumer (positions, gap repair reads)."""
        conf = _client_conf(self.bootstrap_servers, self.security_protocol, self.sasl_username, self.sasl_password)
        return {**conf, "client.id": "trade-settlement-ledger"}

    def producer_conf(self) -> dict[str, Any]:
        """librdkafka settings for the settlement producer (durability is pinned by `settlement.producer`)."""
        conf = _client_conf(self.bootstrap_servers, self.security_protocol, self.sasl_username, self.sasl_password)
        return {**conf, "client.id": "trade-settlement"}

    def registry_conf(self) -> dict[str, Any]:
        """Registry client settings. Every request is bounded by the batch deadline: a registry that accepts
        the connection and never answers must fail the batch for retry, not hang it. A request may take a
        quarter of the deadline, retried once after 0.2 s, so the worst lookup costs half of it."""
        bound = max(1.0, self.delivery_timeout_s / 4)
        conf: dict[str, Any] = {"timeout": bound, "max.retries": 1, "retries.wait.ms": 200, "retries.max.wait.ms": 1000}
        conf.update(self.registry_config)
        conf["timeout"] = min(float(conf["timeout"]), bound) if _is_number(conf["timeout"]) else bound
        if _is_number(conf["max.retries"]):
            conf["max.retries"] = int(min(max(conf["max.retries"], 0), 1))
        return {"url": self.registry_url, **conf}


def _client_conf(bootstrap: str, protocol: str, username: Secret | None, password: Secret | None) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "security.protocol": protocol}
    if username is not None and password is not None:
        conf.update(
            {"sasl.mechanisms": "PLAIN", "sasl.username": username.reveal(), "sasl.password": password.reveal()}
        )
    return conf


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Reader:
    def __init__(self, env: Mapping[str, str], vault_factory: Callable[[str], SecretSource] | None) -> None:
        self.env = env
        self._vault_factory = vault_factory
        self._vault: SecretSource | None = None

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is not None and value.strip().startswith(_UNRESOLVED_REFERENCE):
            raise ConfigError(
                name,
                "is a Key Vault reference the platform did not resolve; give the app's managed "
                "identity the 'Key Vault Secrets User' role on that vault",
            )
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def required(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            raise ConfigError(name, "is required but not set")
        return value

    def secret(self, name: str) -> Secret | None:
        value = self.raw(name)
        if value is not None:
            return Secret(value)
        vault_url = self.raw("KEY_VAULT_URL")
        if vault_url is None:
            return None
        secret_name = secret_name_for(name, self.env)
        try:
            if self._vault is None:
                if self._vault_factory is None:
                    from settlement.secrets import KeyVaultSecrets

                    self._vault = KeyVaultSecrets(vault_url)
                else:
                    self._vault = self._vault_factory(vault_url)
            return Secret(self._vault.get(secret_name))
        except SecretNotFound:
            return None
        except Exception as exc:  # noqa: BLE001 - azure-identity/keyvault raise many types; name it, keep going
            raise ConfigError(
                name, f"could not read secret '{secret_name}' from KEY_VAULT_URL ({type(exc).__name__})"
            ) from None

    def json_secret(self, name: str) -> dict[str, Any]:
        secret = self.secret(name)
        if secret is None:
            return {}
        try:
            parsed = json.loads(secret.reveal())
        except json.JSONDecodeError as exc:
            # The position only: the text may hold credentials.
            raise ConfigError(name, f"is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
        if not isinstance(parsed, dict):
            raise ConfigError(name, f"must be a JSON object, not {type(parsed).__name__}")
        return parsed

    def number(self, name: str, default: float, low: float, high: float) -> float:
        return float(self._bounded(name, default, low, high, float, "a number", "g"))

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        return int(self._bounded(name, default, low, high, int, "a whole number", "d"))

    def _bounded(
        self, name: str, default: float, low: float, high: float, parse: Callable[[str], float], kind: str, fmt: str
    ) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = parse(value)
        except ValueError:
            raise ConfigError(name, f"{value!r} is not {kind}") from None
        if not low <= number <= high:
            raise ConfigError(name, f"{number:{fmt}} is outside {low:{fmt}}..{high:{fmt}}")
        return number

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.raw(name) or default
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise ConfigError(name, f"{value!r} is not one of {', '.join(allowed)}")

    def kafka(self) -> tuple[str, str, Secret | None, Secret | None]:
        """Bootstrap servers, security protocol, SASL username and password: how any client of ours connects."""
        bootstrap = self.required("KAFKA_BOOTSTRAP_SERVERS")
        username = self.secret("KAFKA_SASL_USERNAME")
        password = self.secret("KAFKA_SASL_PASSWORD")
        if (username is None) != (password is None):
            missing = "KAFKA_SASL_PASSWORD" if password is None else "KAFKA_SASL_USERNAME"
            raise ConfigError(missing, "must be set together with the other SASL setting")
        protocol = (self.raw("KAFKA_SECURITY_PROTOCOL") or ("SASL_SSL" if username else "PLAINTEXT")).upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError("KAFKA_SECURITY_PROTOCOL", f"{protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}")
        return bootstrap, protocol, username, password

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(name, f"{value!r} is not true or false")


def load_settings(env: Mapping[str, str], vault_factory: Callable[[str], SecretSource] | None = None) -> Settings:
    """Read every setting; raise `ConfigError` for the first bad one."""
    r = _Reader(env, vault_factory)
    bootstrap, protocol, username, password = r.kafka()
    registry_url = r.required("SCHEMA_REGISTRY_URL")
    if not registry_url.startswith(("http://", "https://")):
        raise ConfigError("SCHEMA_REGISTRY_URL", "must start with http:// or https://")
    watchlist = frozenset(s.strip() for s in (r.raw("SETTLEMENT_SEC_WATCHLIST") or "").split(",") if s.strip())
    delivery_timeout = r.number("SETTLEMENT_DELIVERY_TIMEOUT_SECONDS", DEFAULT_DELIVERY_TIMEOUT_S, 1.0, 1800.0)
    guarantee = r.choice("SETTLEMENT_DELIVERY_GUARANTEE", EXACTLY_ONCE, GUARANTEES)
    group = r.raw("KAFKA_CONSUMER_GROUP") or ""
    if guarantee == EXACTLY_ONCE and not group:
        raise ConfigError("KAFKA_CONSUMER_GROUP", f"is required with SETTLEMENT_DELIVERY_GUARANTEE {EXACTLY_ONCE}")
    settings = Settings(
        bootstrap_servers=bootstrap,
        security_protocol=protocol,
        sasl_username=username,
        sasl_password=password,
        producer_config=r.json_secret("KAFKA_PRODUCER_CONFIG"),
        registry_url=registry_url.rstrip("/"),
        registry_config=r.json_secret("SCHEMA_REGISTRY_CONFIG"),
        topics=Topics(
            settlements=r.raw("SETTLEMENTS_TOPIC") or "trade-settlements",
            dead_letter=r.raw("DEAD_LETTER_TOPIC") or "user_trades-dlq",
        ),
        rules=RulesConfig(
            large_trade_limit=r.number("SETTLEMENT_LARGE_TRADE_LIMIT", DEFAULT_LARGE_TRADE_LIMIT, 0.0, 1e15),
            sec_watchlist=watchlist,
            sec_sample_rate=r.number("SETTLEMENT_SEC_SAMPLE_RATE", DEFAULT_SEC_SAMPLE_RATE, 0.0, 1.0),
        ),
        max_record_bytes=int(r.number("SETTLEMENT_MAX_RECORD_BYTES", 65_536, 64, 8 * 1024 * 1024)),
        delivery_timeout_s=delivery_timeout,
        auto_register_schemas=r.flag("SCHEMA_REGISTRY_AUTO_REGISTER", True),
        # Sized well above the connector's batches (64 records of at most SETTLEMENT_MAX_RECORD_BYTES, base64)
        # and below the 100 MB a Functions HTTP request may carry.
        http_max_body_bytes=int(r.number("SETTLEMENT_HTTP_MAX_BODY_BYTES", 32 * 1024 * 1024, 1024, 100 * 1024 * 1024)),
        http_max_records=int(r.number("SETTLEMENT_HTTP_MAX_RECORDS", 10_000, 1, 1_000_000)),
        guarantee=guarantee,
        ledger_group=group,
        commit_interval_s=r.integer("SETTLEMENT_COMMIT_INTERVAL_MS", DEFAULT_COMMIT_INTERVAL_MS, 0, 60_000) / 1000,
    )
    if "url" in settings.registry_config:
        raise ConfigError("SCHEMA_REGISTRY_CONFIG", "must not contain 'url'; set SCHEMA_REGISTRY_URL instead")
    return settings


@dataclass(frozen=True)
class TriggerSettings:
    """Settings the host reads when it indexes the app (enum-valued binding properties and numbers cannot be
    `%setting%` expressions). Read at import of `function_app`, so each bad value must fail with a message
    naming its setting: a bare exception there breaks indexing and the host hides why."""

    protocol: str
    authentication_mode: str
    lag_threshold: int
    max_retries: int
    warm_start: bool


# The enums of azure-functions' decorators/kafka.py (BrokerProtocol, BrokerAuthenticationMode).
_TRIGGER_PROTOCOLS = ("NotSet", "Plaintext", "Ssl", "SaslPlaintext", "SaslSsl")
_TRIGGER_AUTH_MODES = ("NotSet", "Gssapi", "Plain", "ScramSha256", "ScramSha512")


def load_trigger_settings(env: Mapping[str, str]) -> TriggerSettings:
    r = _Reader(env, None)
    return TriggerSettings(
        protocol=r.choice("KAFKA_TRIGGER_PROTOCOL", "SaslSsl", _TRIGGER_PROTOCOLS),
        authentication_mode=r.choice("KAFKA_TRIGGER_AUTH_MODE", "Plain", _TRIGGER_AUTH_MODES),
        lag_threshold=r.integer("KAFKA_LAG_THRESHOLD", 1000, 1, 10_000_000),
        max_retries=r.integer("SETTLEMENT_MAX_RETRIES", 4, -1, 100),
        warm_start=r.flag("SETTLEMENT_WARM_START", True),
    )


def kafka_client_conf(
    env: Mapping[str, str], vault_factory: Callable[[str], SecretSource] | None = None
) -> dict[str, Any]:
    """librdkafka connection settings from the function's own app settings, for tools that act on its topics
    (scripts/dlq_redrive.py): the same settings, secrets and checks as the function's producer."""
    return _client_conf(*_Reader(env, vault_factory).kafka())
