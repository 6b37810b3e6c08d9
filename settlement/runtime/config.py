"""All app settings: each declared once (`SETTINGS`), read and validated once per process, errors naming it.

A declaration holds a setting's name, default, bounds, whether it is secret, and when it is read: at
indexing (the host imports `function_app` and reads the binding; a bad value fails start-up) or at the first
invocation. Loading, the README's settings table, `local.settings.json.example` and deploy's secret list are
checked against it (tests/unit/test_settings_declared.py). A missing or malformed setting fails with
`ConfigError("SETTING: what is wrong")`; secret settings never appear in an error or a repr.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import settlement.runtime.limits as limits
from settlement.core.errors import ConfigError
from settlement.core.rules import DEFAULT_LARGE_TRADE_LIMIT, DEFAULT_SEC_SAMPLE_RATE, RulesConfig
from settlement.core.topics import Topics
from settlement.runtime.identity import EntraSettings
from settlement.runtime.secrets import Secret, SecretNotFound, SecretSource, secret_name_for

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
EXACTLY_ONCE = "exactly-once"
AT_LEAST_ONCE = "at-least-once"
GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)
# The enums of azure-functions' decorators/kafka.py (BrokerProtocol, BrokerAuthenticationMode).
_TRIGGER_PROTOCOLS = ("NotSet", "Plaintext", "Ssl", "SaslPlaintext", "SaslSsl")
# ... and the extension's `OAuthBearer` (BrokerAuthenticationMode.cs, 4.0.0+), which the library's enum lacks.
_TRIGGER_AUTH_MODES = ("NotSet", "Gssapi", "Plain", "ScramSha256", "ScramSha512", "OAuthBearer")
KEY = "key"
ENTRA = "entra"
AUTH_MODES = (KEY, ENTRA)
# The trigger's OIDC client credentials (the extension's OAuthBearer* attributes), for KAFKA_TRIGGER_AUTH_MODE
# OAuthBearer; client id, secret and token endpoint are required together.
TRIGGER_OAUTH: Mapping[str, str] = MappingProxyType(
    {
        "KAFKA_TRIGGER_OAUTH_CLIENT_ID": "o_auth_bearer_client_id",
        "KAFKA_TRIGGER_OAUTH_CLIENT_SECRET": "o_auth_bearer_client_secret",
        "KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT": "o_auth_bearer_token_endpoint_url",
        "KAFKA_TRIGGER_OAUTH_SCOPE": "o_auth_bearer_scope",
        "KAFKA_TRIGGER_OAUTH_EXTENSIONS": "o_auth_bearer_extensions",
    }
)
_TRIGGER_OAUTH_REQUIRED = (
    "KAFKA_TRIGGER_OAUTH_CLIENT_ID",
    "KAFKA_TRIGGER_OAUTH_CLIENT_SECRET",
    "KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT",
)
_ENTRA_ONLY = (
    "ENTRA_CLIENT_ID",
    "ENTRA_TOKEN_SCOPE",
    "KAFKA_LOGICAL_CLUSTER",
    "CONFLUENT_IDENTITY_POOL_ID",
    "SCHEMA_REGISTRY_LOGICAL_CLUSTER",
)
_UNRESOLVED_REFERENCE = "@Microsoft.KeyVault("
REQUIRED: Any = object()  # a declaration's default when the setting must be set

Kind = Literal["text", "url", "integer", "number", "flag", "choice", "list", "json", "schedule"]


@dataclass(frozen=True)
class Setting:
    """One app setting. `default` is the parsed value used when it is unset (None: unset means absent)."""

    name: str
    kind: Kind
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    read_at: Literal["indexing", "first invocation", "both"] = "first invocation"

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _declare(*settings: Setting) -> Mapping[str, Setting]:
    return MappingProxyType({s.name: s for s in settings})


MiB = 1024 * 1024
SETTINGS = _declare(
    Setting("KAFKA_BOOTSTRAP_SERVERS", "text", REQUIRED),
    # The trigger's (Plain, Scram*) and, with KAFKA_AUTH key, our clients' too.
    Setting("KAFKA_SASL_USERNAME", "text", None, secret=True, read_at="both"),
    Setting("KAFKA_SASL_PASSWORD", "text", None, secret=True, read_at="both"),
    # How our clients (producer, ledger, repair) sign in: key (the SASL settings above, or none) or entra (the
    # managed identity's tokens, settlement/runtime/identity.py). Checked at indexing with the trigger's.
    Setting("KAFKA_AUTH", "choice", KEY, choices=AUTH_MODES, read_at="both"),
    Setting("ENTRA_CLIENT_ID", "text", None, read_at="both"),
    Setting("ENTRA_TOKEN_SCOPE", "text", None, read_at="both"),
    Setting("KAFKA_LOGICAL_CLUSTER", "text", None, read_at="both"),
    Setting("CONFLUENT_IDENTITY_POOL_ID", "text", None, read_at="both"),
    # Unset: SASL_SSL when SASL credentials are set, else PLAINTEXT.
    Setting("KAFKA_SECURITY_PROTOCOL", "choice", None, choices=SECURITY_PROTOCOLS),
    Setting("KAFKA_TRIGGER_PROTOCOL", "choice", "SaslSsl", choices=_TRIGGER_PROTOCOLS, read_at="indexing"),
    Setting("KAFKA_TRIGGER_AUTH_MODE", "choice", "Plain", choices=_TRIGGER_AUTH_MODES, read_at="indexing"),
    Setting("KAFKA_TRIGGER_OAUTH_CLIENT_ID", "text", None, read_at="indexing"),
    Setting("KAFKA_TRIGGER_OAUTH_CLIENT_SECRET", "text", None, secret=True, read_at="indexing"),
    Setting("KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT", "url", None, read_at="indexing"),
    Setting("KAFKA_TRIGGER_OAUTH_SCOPE", "text", None, read_at="indexing"),
    Setting("KAFKA_TRIGGER_OAUTH_EXTENSIONS", "text", None, read_at="indexing"),
    Setting("KAFKA_PRODUCER_CONFIG", "json", {}, secret=True),
    # Required by the trigger's binding, and by exactly-once (the ledger's names derive from it).
    Setting("KAFKA_CONSUMER_GROUP", "text", None),
    Setting("KAFKA_LAG_THRESHOLD", "integer", 1000, 1, 10_000_000, read_at="indexing"),
    Setting("SETTLEMENT_DELIVERY_GUARANTEE", "choice", EXACTLY_ONCE, choices=GUARANTEES),
    # How long a partition's transaction stays open across batches (docs/guarantees.md, "Exactly once"): what a
    # read_committed reader waits at most beyond at-least-once, against a few ms of commit per interval.
    Setting("SETTLEMENT_COMMIT_INTERVAL_MS", "integer", 300, 0, 60_000),
    Setting("SCHEMA_REGISTRY_URL", "url", REQUIRED),
    Setting("SCHEMA_REGISTRY_CONFIG", "json", {}, secret=True),
    Setting("SCHEMA_REGISTRY_AUTH", "choice", KEY, choices=AUTH_MODES, read_at="both"),
    Setting("SCHEMA_REGISTRY_LOGICAL_CLUSTER", "text", None, read_at="both"),
    Setting("SCHEMA_REGISTRY_AUTO_REGISTER", "flag", True),
    Setting("USER_TRADES_TOPIC", "text", "user_trades"),
    Setting("SETTLEMENTS_TOPIC", "text", "trade-settlements"),
    Setting("DEAD_LETTER_TOPIC", "text", "user_trades-dlq"),
    Setting("SETTLEMENT_LARGE_TRADE_LIMIT", "number", DEFAULT_LARGE_TRADE_LIMIT, 0.0, 1e15),
    Setting("SETTLEMENT_SEC_WATCHLIST", "list", frozenset()),
    Setting("SETTLEMENT_SEC_SAMPLE_RATE", "number", DEFAULT_SEC_SAMPLE_RATE, 0.0, 1.0),
    Setting("SETTLEMENT_MAX_RECORD_BYTES", "integer", 65_536, 64, 8 * MiB),
    # A batch's deadline. With host.json's retries it bounds how long one batch can hold its partition
    # without polling (docs/operations.md, "Retries and the poll interval"); tests/unit/test_extension.py keeps
    # that below.
    Setting("SETTLEMENT_DELIVERY_TIMEOUT_SECONDS", "number", 30.0, 1.0, 1800.0),
    # Sized well above the connector's batches (64 records of at most SETTLEMENT_MAX_RECORD_BYTES, base64)
    # and below the 100 MB a Functions HTTP request may carry.
    Setting("SETTLEMENT_HTTP_MAX_BODY_BYTES", "integer", 32 * MiB, 1024, 100 * MiB),
    Setting("SETTLEMENT_HTTP_MAX_RECORDS", "integer", 10_000, 1, 1_000_000),
    Setting("SETTLEMENT_MAX_RETRIES", "integer", 4, 0, 100, read_at="indexing"),
    Setting("SETTLEMENT_WARM_START", "flag", True, read_at="indexing"),
    # When the repair (settlement/delivery/exactly_once/repair.py) looks for settled positions left behind by an
    # instance that died or stalled: an NCRONTAB schedule, baked into the timer binding at indexing. Every 10 s keeps
    # a trade left behind visible within about 30 s (docs/guarantees.md, "Every trade booked within a minute").
    Setting("SETTLEMENT_REPAIR_SCHEDULE", "schedule", "*/10 * * * * *", read_at="indexing"),
    Setting("KEY_VAULT_URL", "url", None),
)
SECRET_SETTINGS = tuple(name for name, s in SETTINGS.items() if s.secret)
DEFAULT_DELIVERY_TIMEOUT_S: float = SETTINGS["SETTLEMENT_DELIVERY_TIMEOUT_SECONDS"].default


@dataclass(frozen=True)
class Settings:
    """What `load_settings` read; every default comes from `SETTINGS`."""

    bootstrap_servers: str
    security_protocol: str
    sasl_username: Secret | None
    sasl_password: Secret | None
    producer_config: dict[str, Any] = field(repr=False)
    registry_url: str
    registry_config: dict[str, Any] = field(repr=False)
    topics: Topics
    rules: RulesConfig
    max_record_bytes: int
    delivery_timeout_s: float
    auto_register_schemas: bool
    http_max_body_bytes: int
    http_max_records: int
    guarantee: str
    ledger_group: str  # the trigger's consumer group; the ledger's names derive from it
    commit_interval_s: float
    source_topic: str  # USER_TRADES_TOPIC: the trigger binding's topic (the host resolves it), read by the repair
    entra: EntraSettings | None = None  # the managed identity, when KAFKA_AUTH or SCHEMA_REGISTRY_AUTH is entra
    kafka_entra: bool = False
    registry_entra: bool = False
    # Set by the composition root once it holds the process's tokens (settlement/runtime/root.py, identity.py).
    kafka_oauth_cb: Callable[[str], Any] | None = field(default=None, repr=False, compare=False)
    registry_bearer: Callable[[dict[str, Any]], dict[str, str]] | None = field(default=None, repr=False, compare=False)
    kafka_error_cb: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == EXACTLY_ONCE

    def _kafka_conf(self) -> dict[str, Any]:
        oauth = self.kafka_oauth_cb if self.kafka_entra else None
        if self.kafka_entra and oauth is None:
            raise ConfigError("KAFKA_AUTH", "entra needs the process's managed identity tokens (root.with_identity)")
        conf = _client_conf(
            self.bootstrap_servers, self.security_protocol, self.sasl_username, self.sasl_password, oauth
        )
        if self.kafka_error_cb is not None:
            conf["error_cb"] = self.kafka_error_cb
        return conf

    def consumer_conf(self) -> dict[str, Any]:
        """librdkafka connection settings for the ledger's consumer (positions, gap repair reads)."""
        conf = self._kafka_conf()
        return {**conf, "client.id": "trade-settlement-ledger"}

    def admin_conf(self) -> dict[str, Any]:
        """librdkafka settings for the repair's admin client (group offsets and partition ends)."""
        conf = self._kafka_conf()
        return {**conf, "client.id": "trade-settlement-repair"}

    def producer_conf(self) -> dict[str, Any]:
        """librdkafka settings for the settlement producer (durability is pinned by `settlement.delivery.producer`)."""
        conf = self._kafka_conf()
        return {**conf, "client.id": "trade-settlement"}

    def registry_conf(self) -> dict[str, Any]:
        """Registry client settings. Every request is bounded by the batch deadline: a registry that accepts
        the connection and never answers must fail the batch for retry, not hang it. A request may take its
        share of the deadline, retried once after 0.2 s (`settlement.runtime.limits`: the invocation bound
        counts on it)."""
        bound = limits.registry_timeout_s(self.delivery_timeout_s)
        retries = limits.REGISTRY_RETRIES
        conf: dict[str, Any] = {
            "timeout": bound,
            "max.retries": retries,
            "retries.wait.ms": 200,
            "retries.max.wait.ms": 1000,
        }
        conf.update(self.registry_config)
        if self.registry_entra:
            if self.registry_bearer is None:
                raise ConfigError("SCHEMA_REGISTRY_AUTH", "entra needs the process's managed identity tokens")
            # confluent-kafka's CUSTOM bearer source: the function is called per request, with this config.
            conf["bearer.auth.credentials.source"] = "CUSTOM"
            conf["bearer.auth.custom.provider.function"] = self.registry_bearer
            conf["bearer.auth.custom.provider.config"] = {}
        conf["timeout"] = min(float(conf["timeout"]), bound) if _is_number(conf["timeout"]) else bound
        if _is_number(conf["max.retries"]):
            conf["max.retries"] = int(min(max(conf["max.retries"], 0), retries))
        return {"url": self.registry_url, **conf}


def _client_conf(
    bootstrap: str,
    protocol: str,
    username: Secret | None,
    password: Secret | None,
    oauth_cb: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "security.protocol": protocol}
    if oauth_cb is not None:
        # librdkafka's default OAUTHBEARER method with our callback (never its `azure_imds` method: Functions
        # expose the managed identity through IDENTITY_ENDPOINT, not the VM metadata address).
        conf.update({"sasl.mechanisms": "OAUTHBEARER", "oauth_cb": oauth_cb})
    elif username is not None and password is not None:
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
                    from settlement.runtime.secrets import KeyVaultSecrets

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

    def get(self, name: str) -> Any:
        """The setting read as its declaration says: parsed, bounded, defaulted, or `ConfigError`."""
        s = SETTINGS[name]
        if s.kind == "json":
            return self.json_secret(name)  # a fresh {} when unset: never the declaration's shared default
        if s.secret:
            return self.secret(name)
        if s.kind == "integer":
            assert s.low is not None and s.high is not None
            return self.integer(name, s.default, int(s.low), int(s.high))
        if s.kind == "number":
            assert s.low is not None and s.high is not None
            return self.number(name, s.default, s.low, s.high)
        if s.kind == "flag":
            return self.flag(name, s.default)
        if s.kind == "choice":
            return None if s.default is None and self.raw(name) is None else self.choice(name, s.default, s.choices)
        if s.kind == "list":
            return frozenset(v.strip() for v in (self.raw(name) or "").split(",") if v.strip()) or s.default
        if s.kind == "schedule":
            from settlement.core.schedule import normalized

            try:
                return normalized(self.raw(name) or s.default)
            except ValueError as exc:
                raise ConfigError(name, str(exc)) from None
        value = self.required(name) if s.required else (self.raw(name) or s.default)
        if s.kind == "url" and value is not None and not value.startswith(("http://", "https://")):
            raise ConfigError(name, "must start with http:// or https://")
        return value.rstrip("/") if s.kind == "url" and value is not None else value

    def kafka(self) -> tuple[str, str, Secret | None, Secret | None]:
        """Bootstrap servers, security protocol, SASL username and password: how any client of ours connects
        (with KAFKA_AUTH entra the SASL settings are the trigger's alone: none for our clients)."""
        bootstrap = self.get("KAFKA_BOOTSTRAP_SERVERS")
        if self.get("KAFKA_AUTH") == ENTRA:
            protocol = self.get("KAFKA_SECURITY_PROTOCOL") or "SASL_SSL"
            if not protocol.startswith("SASL_"):
                raise ConfigError(
                    "KAFKA_SECURITY_PROTOCOL", f"{protocol} carries no SASL: KAFKA_AUTH entra needs SASL_SSL"
                )
            return bootstrap, protocol, None, None
        username = self.get("KAFKA_SASL_USERNAME")
        password = self.get("KAFKA_SASL_PASSWORD")
        if (username is None) != (password is None):
            missing = "KAFKA_SASL_PASSWORD" if password is None else "KAFKA_SASL_USERNAME"
            raise ConfigError(missing, "must be set together with the other SASL setting")
        protocol = self.get("KAFKA_SECURITY_PROTOCOL") or ("SASL_SSL" if username else "PLAINTEXT")
        return bootstrap, protocol, username, password

    def auth(self, trigger_mode: str | None = None) -> tuple[bool, bool, EntraSettings | None]:
        """Each client's authentication mode, checked as a whole: (our Kafka clients use entra, the registry
        client uses entra, the managed identity's settings). A half-set or contradictory combination raises
        `ConfigError` naming the setting to change. Reads the app settings only, never the vault: it runs at
        indexing, where `trigger_mode` (KAFKA_TRIGGER_AUTH_MODE) brings the trigger's credentials in."""
        kafka_entra = self.get("KAFKA_AUTH") == ENTRA
        registry_entra = self.get("SCHEMA_REGISTRY_AUTH") == ENTRA
        if trigger_mode is not None:
            self._trigger_auth(trigger_mode)
        if not (kafka_entra or registry_entra):
            for name in _ENTRA_ONLY:
                if self.raw(name) is not None:
                    raise ConfigError(name, "is set, but neither KAFKA_AUTH nor SCHEMA_REGISTRY_AUTH is entra")
            return False, False, None
        scope = self.raw("ENTRA_TOKEN_SCOPE")
        if scope is None:
            which = "KAFKA_AUTH" if kafka_entra else "SCHEMA_REGISTRY_AUTH"
            raise ConfigError("ENTRA_TOKEN_SCOPE", f"is required with {which} entra (e.g. api://<app id>/.default)")
        extensions: dict[str, str] = {}
        pool = self.raw("CONFLUENT_IDENTITY_POOL_ID")
        if kafka_entra:
            cluster = self.raw("KAFKA_LOGICAL_CLUSTER")
            for name, value in (("KAFKA_LOGICAL_CLUSTER", cluster), ("CONFLUENT_IDENTITY_POOL_ID", pool)):
                if value is None:
                    raise ConfigError(
                        name,
                        "is required with KAFKA_AUTH entra (Confluent Cloud reads it from the "
                        "SASL extensions: logicalCluster, identityPoolId)",
                    )
            assert cluster is not None and pool is not None
            extensions = {"logicalCluster": cluster, "identityPoolId": pool}
            if trigger_mode is not None and trigger_mode not in ("Plain", "ScramSha256", "ScramSha512"):
                for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
                    if self.raw(name) is not None:
                        raise ConfigError(
                            name,
                            f"is set, but nothing uses it: our clients sign in with the managed "
                            f"identity (KAFKA_AUTH entra) and the trigger with {trigger_mode}; remove it",
                        )
        else:
            for name in ("KAFKA_LOGICAL_CLUSTER",):
                if self.raw(name) is not None:
                    raise ConfigError(name, "is set, but KAFKA_AUTH is not entra")
        registry_cluster = self.raw("SCHEMA_REGISTRY_LOGICAL_CLUSTER")
        if registry_entra and registry_cluster is None:
            raise ConfigError(
                "SCHEMA_REGISTRY_LOGICAL_CLUSTER", "is required with SCHEMA_REGISTRY_AUTH entra (lsrc-...)"
            )
        if not registry_entra and registry_cluster is not None:
            raise ConfigError("SCHEMA_REGISTRY_LOGICAL_CLUSTER", "is set, but SCHEMA_REGISTRY_AUTH is not entra")
        entra = EntraSettings(scope, self.raw("ENTRA_CLIENT_ID"), extensions, registry_cluster, pool)
        return kafka_entra, registry_entra, entra

    def _trigger_auth(self, mode: str) -> None:
        """The trigger's credentials, as the extension needs them for its mode."""
        oauth = {name: self.raw(name) for name in TRIGGER_OAUTH}
        if mode == "OAuthBearer":
            for name in _TRIGGER_OAUTH_REQUIRED:
                if oauth[name] is None:
                    raise ConfigError(
                        name, "is required with KAFKA_TRIGGER_AUTH_MODE OAuthBearer (OIDC client credentials)"
                    )
            self.get("KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT")  # a URL
            return
        for name, value in oauth.items():
            if value is not None:
                raise ConfigError(name, f"is set, but KAFKA_TRIGGER_AUTH_MODE is {mode}, not OAuthBearer")
        if mode in ("Plain", "ScramSha256", "ScramSha512"):
            username, password = self.raw("KAFKA_SASL_USERNAME"), self.raw("KAFKA_SASL_PASSWORD")
            if (username is None) != (password is None):
                missing = "KAFKA_SASL_PASSWORD" if password is None else "KAFKA_SASL_USERNAME"
                raise ConfigError(missing, f"must be set together with the other SASL setting (the trigger's {mode})")

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
    """Read every setting of the first invocation; raise `ConfigError` for the first bad one."""
    r = _Reader(env, vault_factory)
    kafka_entra, registry_entra, entra = r.auth()
    bootstrap, protocol, username, password = r.kafka()
    guarantee = r.get("SETTLEMENT_DELIVERY_GUARANTEE")
    group = r.get("KAFKA_CONSUMER_GROUP") or ""
    if guarantee == EXACTLY_ONCE and not group:
        raise ConfigError("KAFKA_CONSUMER_GROUP", f"is required with SETTLEMENT_DELIVERY_GUARANTEE {EXACTLY_ONCE}")
    settings = Settings(
        bootstrap_servers=bootstrap,
        security_protocol=protocol,
        sasl_username=username,
        sasl_password=password,
        producer_config=r.get("KAFKA_PRODUCER_CONFIG"),
        registry_url=r.get("SCHEMA_REGISTRY_URL"),
        registry_config=r.get("SCHEMA_REGISTRY_CONFIG"),
        topics=Topics(settlements=r.get("SETTLEMENTS_TOPIC"), dead_letter=r.get("DEAD_LETTER_TOPIC")),
        rules=RulesConfig(
            large_trade_limit=r.get("SETTLEMENT_LARGE_TRADE_LIMIT"),
            sec_watchlist=r.get("SETTLEMENT_SEC_WATCHLIST"),
            sec_sample_rate=r.get("SETTLEMENT_SEC_SAMPLE_RATE"),
        ),
        max_record_bytes=r.get("SETTLEMENT_MAX_RECORD_BYTES"),
        delivery_timeout_s=r.get("SETTLEMENT_DELIVERY_TIMEOUT_SECONDS"),
        auto_register_schemas=r.get("SCHEMA_REGISTRY_AUTO_REGISTER"),
        http_max_body_bytes=r.get("SETTLEMENT_HTTP_MAX_BODY_BYTES"),
        http_max_records=r.get("SETTLEMENT_HTTP_MAX_RECORDS"),
        guarantee=guarantee,
        ledger_group=group,
        commit_interval_s=r.get("SETTLEMENT_COMMIT_INTERVAL_MS") / 1000,
        source_topic=str(r.get("USER_TRADES_TOPIC")),
        entra=entra,
        kafka_entra=kafka_entra,
        registry_entra=registry_entra,
    )
    if registry_entra:
        for key in settings.registry_config:
            if key.startswith(("basic.auth", "bearer.auth")):
                raise ConfigError("SCHEMA_REGISTRY_CONFIG", f"must not set {key!r} with SCHEMA_REGISTRY_AUTH entra")
    if kafka_entra:
        for key in settings.producer_config:
            if key.startswith(("sasl.", "oauth")):
                raise ConfigError("KAFKA_PRODUCER_CONFIG", f"must not set {key!r} with KAFKA_AUTH entra")
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
    repair_schedule: str  # six-field NCRONTAB
    # The trigger's credential parameters as `%SETTING%` expressions, only those its mode uses and that are set:
    # the extension resolves each one it reads, and an unset setting fails the listener's start.
    credentials: dict[str, str] = field(default_factory=dict)


def load_trigger_settings(env: Mapping[str, str]) -> TriggerSettings:
    """The settings the host reads at indexing, and every client's authentication checked (`_Reader.auth`)."""
    r = _Reader(env, None)
    mode = r.get("KAFKA_TRIGGER_AUTH_MODE")
    r.auth(mode)
    if mode == "OAuthBearer":
        credentials = {param: f"%{name}%" for name, param in TRIGGER_OAUTH.items() if r.raw(name) is not None}
    else:
        credentials = {"username": "%KAFKA_SASL_USERNAME%", "password": "%KAFKA_SASL_PASSWORD%"}
    return TriggerSettings(
        protocol=r.get("KAFKA_TRIGGER_PROTOCOL"),
        authentication_mode=mode,
        credentials=credentials,
        lag_threshold=r.get("KAFKA_LAG_THRESHOLD"),
        max_retries=r.get("SETTLEMENT_MAX_RETRIES"),
        warm_start=r.get("SETTLEMENT_WARM_START"),
        repair_schedule=r.get("SETTLEMENT_REPAIR_SCHEDULE"),
    )


def check_invariants(env: Mapping[str, str], trigger: TriggerSettings, host: Any = None) -> None:
    """At indexing: the settings that feed the documented bounds (retries, the batch deadline, the commit
    interval) checked against host.json (`settlement.runtime.limits`); a `ConfigError` names the one to change."""
    r = _Reader(env, None)
    limits.check(
        trigger.max_retries,
        r.get("SETTLEMENT_DELIVERY_TIMEOUT_SECONDS"),
        r.get("SETTLEMENT_COMMIT_INTERVAL_MS") / 1000,
        host or limits.HostLimits.from_host_json(),
    )


def kafka_client_conf(
    env: Mapping[str, str], vault_factory: Callable[[str], SecretSource] | None = None
) -> dict[str, Any]:
    """librdkafka connection settings from the function's own app settings, for tools that act on its topics
    (scripts/dlq_redrive.py): the same settings, secrets and checks as the function's producer."""
    r = _Reader(env, vault_factory)
    kafka_entra, _, entra = r.auth()
    conf = _client_conf(*r.kafka())
    if kafka_entra and entra is not None:
        from settlement.runtime.identity import ManagedIdentityTokens

        conf.update({"sasl.mechanisms": "OAUTHBEARER", "oauth_cb": ManagedIdentityTokens(entra).oauth_cb})
    return conf
