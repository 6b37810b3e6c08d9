"""The Kafka trigger as the host reads it from an app: its binding JSON resolved against app settings, the
user function, the parameter's annotation and the `@app.retry` policy; and one invocation as the host makes
it (host-shaped data through the library's converter)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from localrun.platform.indexing import RetryPolicy, index_app
from localrun.platform.invocation import messages_to_events

_SETTING = re.compile(r"^%([A-Za-z0-9_]+)%$")


@dataclass(frozen=True)
class TriggerBinding:
    function_name: str
    topic: str
    consumer_group: str
    broker_list: str
    cardinality: str
    data_type: str
    lag_threshold: int
    user_function: Callable[..., Any]
    param_name: str = "events"
    annotation: Any = None  # the parameter's annotation, checked by the converter on every call
    retry: RetryPolicy | None = None  # the function's @app.retry policy
    # librdkafka security settings of the extension's consumer (and its scaler's), from the binding: `listener_auth`
    auth: dict[str, Any] = field(default_factory=dict)


def resolve(value: str, settings: Mapping[str, str]) -> str:
    """Resolve a `%NAME%` binding expression the way the host does; a literal stays as it is."""
    match = _SETTING.match(value or "")
    if not match:
        return value
    name = match.group(1)
    if name not in settings or settings[name] == "":
        raise KeyError(f"binding expression %{name}% names an app setting that is not set")
    return settings[name]


# The extension's enums (BrokerAuthenticationMode.cs, BrokerProtocol.cs) as the binding JSON names them, cast to
# Confluent.Kafka's SaslMechanism and SecurityProtocol, i.e. librdkafka's names.
_MECHANISMS = {
    "GSSAPI": "GSSAPI",
    "PLAIN": "PLAIN",
    "SCRAMSHA256": "SCRAM-SHA-256",
    "SCRAMSHA512": "SCRAM-SHA-512",
    "OAUTHBEARER": "OAUTHBEARER",
}
_PROTOCOLS = {"PLAINTEXT": "plaintext", "SSL": "ssl", "SASLPLAINTEXT": "sasl_plaintext", "SASLSSL": "sasl_ssl"}
_OAUTH = {
    "oAuthBearerClientId": "sasl.oauthbearer.client.id",
    "oAuthBearerClientSecret": "sasl.oauthbearer.client.secret",
    "oAuthBearerScope": "sasl.oauthbearer.scope",
    "oAuthBearerTokenEndpointUrl": "sasl.oauthbearer.token.endpoint.url",
    "oAuthBearerExtensions": "sasl.oauthbearer.extensions",
}


def _name(value: object) -> str:
    return str(value or "NOTSET").upper().replace("_", "")


def listener_auth(binding: Mapping[str, Any], settings: Mapping[str, str]) -> dict[str, Any]:
    """The consumer's security settings as the extension derives them from the trigger attribute
    (`KafkaTriggerAttributeBindingProvider.CreateConsumerConfiguration`, extension 4.3.2, then `KafkaListener`'s
    ConsumerConfig): nothing unless the mode or the protocol is set; then username and password resolved, the
    mechanism and protocol cast from its enums, and for OAuthBearer the method (`oidc`: librdkafka fetches the
    token from the endpoint with the client id and secret, and refreshes it itself) and its settings resolved.
    Only set values reach librdkafka (Confluent.Kafka leaves a null property out)."""
    mode, protocol = _name(binding.get("authenticationMode")), _name(binding.get("protocol"))
    if mode == "NOTSET" and protocol == "NOTSET":
        return {}
    conf: dict[str, Any] = {}

    def put(key: str, target: str) -> None:
        # `ResolveSecureSetting` leaves an expression it cannot resolve as it is (no start-up failure); a literal
        # `%NAME%` credential would only fail the broker's authentication later, so an unset one is left out here.
        if binding.get(key):
            try:
                conf[target] = resolve(binding[key], settings)
            except KeyError:
                return

    for key, target in (("username", "sasl.username"), ("password", "sasl.password")):
        put(key, target)
    if mode != "NOTSET":
        conf["sasl.mechanism"] = _MECHANISMS[mode]
    if protocol != "NOTSET":
        conf["security.protocol"] = _PROTOCOLS[protocol]
    if mode in ("PLAIN", "SCRAMSHA256", "SCRAMSHA512") and "sasl.username" not in conf:
        # A local deviation: an app indexed with the repository's defaults (Plain over SaslSsl) and no credentials
        # set runs on the local broker's plain listener, as this host always ran it.
        return {}
    if mode == "OAUTHBEARER":
        conf["sasl.oauthbearer.method"] = "oidc" if _name(binding.get("oAuthBearerMethod")) == "OIDC" else "default"
        for key, target in _OAUTH.items():
            put(key, target)
    return conf


def disabled_setting(function_name: str) -> str:
    """The app setting that disables a function on Azure (and under `func start`): `true` stops its trigger."""
    return f"AzureWebJobs.{function_name}.Disabled"


def is_disabled(function_name: str, settings: Mapping[str, str]) -> bool:
    """Whether the host would leave this function's trigger unstarted. The WebJobs SDK's disable check reads
    the setting as a boolean (case-insensitive `true`) or `1`; anything else leaves the function enabled."""
    value = settings.get(disabled_setting(function_name), "").strip()
    return value.lower() == "true" or value == "1"


class FunctionDisabled(LookupError):
    """The app's Kafka-triggered function is disabled by its app setting: the host starts no listener for it."""


def load_binding(app: Any, settings: Mapping[str, str]) -> TriggerBinding:
    """Index the app as the worker does (refusing what it refuses), then read the Kafka trigger's binding
    JSON as the host does and resolve its `%settings%`. A function disabled by `AzureWebJobs.<name>.Disabled`
    gets no listener, as on Azure: `FunctionDisabled`."""
    for function in index_app(app):
        binding = function.binding("kafkaTrigger")
        if binding is None:
            continue
        if is_disabled(function.name, settings):
            raise FunctionDisabled(
                f"{function.name} is disabled by the app setting {disabled_setting(function.name)}: the host starts "
                "no Kafka listener for it (the connector entry path is in use; see docs/architecture.md, "
                "One entry path at a time)"
            )
        return TriggerBinding(
            function_name=function.name,
            topic=resolve(binding["topic"], settings),
            consumer_group=resolve(binding.get("consumerGroup", "$Default"), settings),
            broker_list=resolve(binding["brokerList"], settings),
            cardinality=str(binding.get("cardinality", "ONE")).upper(),
            data_type=str(binding.get("dataType", "STRING")).upper(),
            lag_threshold=int(binding.get("lagThreshold", 1000)),
            user_function=function.user_function,
            param_name=binding["name"],
            annotation=function.inputs[binding["name"]].annotation,
            retry=function.retry,
            auth=listener_auth(binding, settings),
        )
    raise LookupError("the app has no Kafka-triggered function")


def invoke(binding: TriggerBinding, batch: list[Message]) -> Any:
    """Call the function with the batch as the host + worker deliver it (see localrun/platform/invocation.py)."""
    events = messages_to_events(batch, binding.annotation)
    return binding.user_function(**{binding.param_name: events})
