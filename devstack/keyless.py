"""The local stack signed in with tokens: the app settings of a keyless run (our clients with the managed identity
at the issuer's App Service endpoint, the trigger with OIDC client credentials, both against the broker's
OAUTHBEARER listener and the registry that requires tokens), a token source for the harness's own registry
client, and the issuer's test handle (faults, token lifetime, counts)."""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from typing import Any

from devstack.issuer import AUDIENCE
from devstack.stack import TRIGGER_CLIENT_ID, StackState

SCOPE = f"{AUDIENCE}/.default"
# The app's user-assigned identity at the local issuer (its object id derives from this, as Entra's is fixed).
IDENTITY_CLIENT_ID = "5d6c1b1e-0f3a-4c52-9b7e-2f1d8a9c4e10"
LOGICAL_CLUSTER = "lkc-local"
IDENTITY_POOL = "pool-local"
REGISTRY_CLUSTER = "lsrc-local"


def app_settings(state: StackState) -> dict[str, str]:
    """The app settings that sign every client in with tokens from the local issuer. `IDENTITY_ENDPOINT` and
    `IDENTITY_HEADER` are what the Functions platform sets in a worker whose app has a managed identity."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": state.oauth_bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",  # Confluent Cloud: SASL_SSL (the default with entra)
        "KAFKA_AUTH": "entra",
        "SCHEMA_REGISTRY_AUTH": "entra",
        "SCHEMA_REGISTRY_URL": state.secure_registry_url,
        "ENTRA_TOKEN_SCOPE": SCOPE,
        "ENTRA_CLIENT_ID": IDENTITY_CLIENT_ID,
        "KAFKA_LOGICAL_CLUSTER": LOGICAL_CLUSTER,
        "CONFLUENT_IDENTITY_POOL_ID": IDENTITY_POOL,
        "SCHEMA_REGISTRY_LOGICAL_CLUSTER": REGISTRY_CLUSTER,
        "KAFKA_TRIGGER_PROTOCOL": "SaslPlaintext",
        "KAFKA_TRIGGER_AUTH_MODE": "OAuthBearer",
        "KAFKA_TRIGGER_OAUTH_CLIENT_ID": TRIGGER_CLIENT_ID,
        "KAFKA_TRIGGER_OAUTH_CLIENT_SECRET": state.trigger_secret,
        "KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT": f"{state.issuer_url}/token",
        "KAFKA_TRIGGER_OAUTH_SCOPE": SCOPE,
        "KAFKA_TRIGGER_OAUTH_EXTENSIONS": f"logicalCluster={LOGICAL_CLUSTER},identityPoolId={IDENTITY_POOL}",
        "KAFKA_SASL_USERNAME": "",
        "KAFKA_SASL_PASSWORD": "",
        "IDENTITY_ENDPOINT": state.identity_endpoint,
        "IDENTITY_HEADER": state.identity_header,
    }


def harness_registry_conf(state: StackState) -> dict[str, Any]:
    """Registry client settings for the harness (the generator, the checks): tokens of the trigger's client from
    the issuer, one per request (local, cheap), through confluent-kafka's CUSTOM bearer source."""

    def fields(_conf: dict[str, Any]) -> dict[str, str]:
        return {"bearer.auth.token": client_token(state), "bearer.auth.logical.cluster": REGISTRY_CLUSTER}

    return {
        "bearer.auth.credentials.source": "CUSTOM",
        "bearer.auth.custom.provider.function": fields,
        "bearer.auth.custom.provider.config": {},
    }


def client_token(state: StackState, secret: str | None = None) -> str:
    """A client-credentials token of the trigger's client (with `secret`, or the one the stack made)."""
    basic = base64.b64encode(f"{TRIGGER_CLIENT_ID}:{secret or state.trigger_secret}".encode()).decode()
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": SCOPE}).encode()
    url, headers = f"{state.issuer_url}/token", {"Authorization": f"Basic {basic}"}
    request = urllib.request.Request(url, data=form, headers=headers)  # noqa: S310 - the local issuer
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - the local issuer
        return str(json.loads(resp.read())["access_token"])


def _admin(state: StackState, path: str, body: dict[str, Any]) -> None:
    url = f"{state.issuer_url}/admin/{path}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")  # noqa: S310 - local issuer
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - the local issuer
        return


def set_fault(state: StackState, fault: str | None) -> None:
    """From now on the issuer hands out tokens that are `expired` (the answer says otherwise), signed by a
    `rogue-key` its JWKS lacks, or (None) good ones."""
    _admin(state, "fault", {"fault": fault})


def set_lifetime(state: StackState, seconds: int) -> None:
    """How long the tokens issued from now on live."""
    _admin(state, "lifetime", {"seconds": seconds})


def add_client_secret(state: StackState, secret: str) -> None:
    """A second valid secret for the trigger's client (a rotation's overlap)."""
    _admin(state, "clients/add", {"client_id": TRIGGER_CLIENT_ID, "secret": secret})


def revoke_client_secret(state: StackState, secret: str) -> None:
    _admin(state, "clients/revoke", {"client_id": TRIGGER_CLIENT_ID, "secret": secret})


def stats(state: StackState) -> dict[str, Any]:
    """Tokens issued so far: `managed_identity`, `client_credentials`, and requests `refused`."""
    with urllib.request.urlopen(f"{state.issuer_url}/admin/stats", timeout=5) as resp:  # noqa: S310 - local issuer
        return dict(json.loads(resp.read()))
