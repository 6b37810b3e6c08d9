"""The runtime: settings, the host's limits, the composition root (root.py: the process's services, built once from
the settings) and the adapters from `azure.functions` shapes (the Kafka trigger, the HTTP sink path, the repair timer)
to the delivery layer. `function_app.py` imports this layer only, and holds the process's one `Root`.

Its surface is `__all__` below: code outside `settlement/` imports these names from `settlement.runtime`, never a
module inside it (an import-linter contract holds it to that).
"""

from settlement.runtime.config import (
    AT_LEAST_ONCE,
    DEFAULT_DELIVERY_TIMEOUT_S,
    EXACTLY_ONCE,
    GUARANTEES,
    REQUIRED,
    SECRET_SETTINGS,
    SETTINGS,
    Settings,
    TriggerSettings,
    check_invariants,
    kafka_client_conf,
    load_settings,
    load_trigger_settings,
)
from settlement.runtime.identity import EntraSettings, ManagedIdentityTokens, TokenUnavailable
from settlement.runtime.limits import (
    DEFAULT_COMMIT_ON_FAILURE,
    DEFAULT_MAX_POLL_INTERVAL_MS,
    DEFAULT_MAX_RETRIES,
    HOST_JSON,
    INVOCATION_FACTOR,
    JITTER,
    RETRY_MAXIMUM_S,
    RETRY_MINIMUM_S,
    HostLimits,
    interval,
    kafka_extension,
    read_host_json,
    transaction_timeout_ms,
)
from settlement.runtime.root import Root, Services, with_identity
from settlement.runtime.secrets import SecretNotFound
from settlement.runtime.sink import HttpLimits
from settlement.runtime.triggers import (
    from_kafka_event,
    repair_on_timer,
    settle_http_request,
    settle_kafka_events,
    trigger_auth,
)

__all__ = [
    "AT_LEAST_ONCE",
    "DEFAULT_COMMIT_ON_FAILURE",
    "DEFAULT_DELIVERY_TIMEOUT_S",
    "DEFAULT_MAX_POLL_INTERVAL_MS",
    "DEFAULT_MAX_RETRIES",
    "EXACTLY_ONCE",
    "GUARANTEES",
    "HOST_JSON",
    "INVOCATION_FACTOR",
    "JITTER",
    "REQUIRED",
    "RETRY_MAXIMUM_S",
    "RETRY_MINIMUM_S",
    "SECRET_SETTINGS",
    "SETTINGS",
    "EntraSettings",
    "HostLimits",
    "HttpLimits",
    "ManagedIdentityTokens",
    "Root",
    "SecretNotFound",
    "Services",
    "Settings",
    "TokenUnavailable",
    "TriggerSettings",
    "check_invariants",
    "from_kafka_event",
    "interval",
    "kafka_client_conf",
    "kafka_extension",
    "load_settings",
    "load_trigger_settings",
    "read_host_json",
    "repair_on_timer",
    "settle_http_request",
    "settle_kafka_events",
    "transaction_timeout_ms",
    "trigger_auth",
    "with_identity",
]
