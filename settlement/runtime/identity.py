"""The app's managed identity as the credential of our own clients: the producer, the ledger's clients, the repair
and the Schema Registry client sign in with Entra ID tokens instead of a key and secret (`KAFKA_AUTH=entra`,
`SCHEMA_REGISTRY_AUTH=entra`).

Tokens come from azure-identity's `ManagedIdentityCredential` (on Functions: the App Service endpoint named by
`IDENTITY_ENDPOINT` and `X-IDENTITY-HEADER`, never the VM metadata address that librdkafka's `azure_imds` method
calls). One `ManagedIdentityTokens` per process serves every client: confluent-kafka calls `oauth_cb` on
librdkafka's background thread when a client starts and again at 80 % of the token's life, so a refresh never
waits in a batch's thread; the registry client calls `registry_fields` per request. A token is reused until 80 %
of its life has passed, so neither path asks the endpoint more than once per token life.

A token that cannot be had is never a dead letter: building the clients raises `TokenUnavailable` (a
`TransientError`, so the batch is retried) naming the cause; a token a broker or registry refuses fails the
batch for retry, and `explain` names why from what the token says about itself and from the issuer's published
keys. Nothing here logs or returns a token's text.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from settlement.core import tokens
from settlement.core.errors import TransientError

log = logging.getLogger("settlement.identity")
# How much of a token's life it is used for before a new one is asked for (librdkafka refreshes at 80 % too).
REFRESH_AT = 0.8
_RECENT_S = 120.0  # a refusal or failure older than this is not offered as the cause of a batch's failure
_DISCOVERY_TIMEOUT_S = 2.0


class TokenUnavailable(TransientError):
    """The managed identity gave no token (its endpoint unreachable, refusing, or unknown identity): the batch
    is retried; the message names the endpoint's answer, never a token."""


class Token(Protocol):
    token: str
    expires_on: int


class Credential(Protocol):
    def get_token(self, *scopes: str) -> Token: ...


@dataclass(frozen=True)
class EntraSettings:
    """The managed identity our clients sign in with (settlement/runtime/config.py reads and checks these)."""

    scope: str  # ENTRA_TOKEN_SCOPE, e.g. api://<app id>/.default
    client_id: str | None  # ENTRA_CLIENT_ID: a user-assigned identity; None: the system-assigned one
    kafka_extensions: dict[str, str]  # SASL extensions: logicalCluster, identityPoolId (Confluent Cloud)
    registry_logical_cluster: str | None  # SCHEMA_REGISTRY_LOGICAL_CLUSTER
    identity_pool: str | None  # CONFLUENT_IDENTITY_POOL_ID


def managed_identity(client_id: str | None) -> Credential:
    """azure-identity's managed identity credential, user-assigned when a client id is given."""
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


class ManagedIdentityTokens:
    """One process's tokens for one scope, shared by every client of ours."""

    def __init__(
        self,
        settings: EntraSettings,
        credential: Callable[[str | None], Credential] = managed_identity,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._credential_factory = credential
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._refresh_at = 0.0
        self.fetched = 0  # tokens this process got from the endpoint
        self.handed = 0  # tokens handed to a Kafka client (each client's start and each of its refreshes)
        self._failure: tuple[float, str] | None = None  # the endpoint's last failure: when, what
        self._refused: tuple[float, str, str] | None = None  # the last refusal: when, by whom and why, the token

    def token(self) -> Token:
        """A token valid for a while yet: the cached one before 80 % of its life, else a new one; raises
        `TokenUnavailable` naming the cause."""
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._refresh_at:
                return self._token
            try:
                # A new credential for each fetch: azure-identity's (MSAL's) cache keeps a token until 5 minutes
                # before it expires (half its life for tokens of 2 h or more), so a refresh at 80 % of a one-hour
                # token got the same token back with 12 minutes left. Ours is the one cache: asked once per 80 %
                # of a token's life, each time a new token from the endpoint.
                token = self._credential_factory(self.settings.client_id).get_token(self.settings.scope)
            except Exception as exc:  # noqa: BLE001 - azure-identity raises several types; named, retried
                cause = _short(exc)
                self._failure = (now, cause)
                log.warning("managed identity: no token for %s: %s", self.settings.scope, cause)
                raise TokenUnavailable(
                    f"the managed identity gave no token for {self.settings.scope}: {cause}"
                ) from None
            life = max(0.0, token.expires_on - now)
            self._token, self._refresh_at = token, now + REFRESH_AT * life
            self._failure = None
            self.fetched += 1
            log.debug("managed identity: token for %s, valid %.0f s", self.settings.scope, life)
            return token

    def oauth_cb(self, _config: str) -> tuple[str, float, str, dict[str, str]]:
        """confluent-kafka's `oauth_cb`: (token, expiry in epoch seconds, principal, SASL extensions). Raising
        makes librdkafka record a token failure and call again; `token` has logged why.

        It runs on a thread librdkafka owns (its background thread), the only Python that does, so the cyclic
        garbage collector is paused while it runs: a collection started here destroys whatever client is cyclic
        garbage, and a client destroyed on its own thread aborts the process (librdkafka's "rd_kafka_destroy()
        called from librdkafka owned thread"). A test suite's worker died so, mid-collection inside a token fetch;
        with the pause, the garbage waits for a collection on one of the process's own threads."""
        _COLLECTOR.pause()
        try:
            token = self.token()
            self.handed += 1
            body = tokens.claims(token.token)
            principal = str(body.get("oid") or body.get("sub") or self.settings.client_id or "managed-identity")
            return token.token, float(token.expires_on), principal, dict(self.settings.kafka_extensions)
        finally:
            _COLLECTOR.resume()

    def registry_fields(self, _config: dict[str, Any]) -> dict[str, str]:
        """The registry client's `bearer.auth.custom.provider.function`: the token and Confluent's routing
        fields, as confluent-kafka's `_CustomOAuthClient` expects them."""
        fields = {
            "bearer.auth.token": self.token().token,
            "bearer.auth.logical.cluster": self.settings.registry_logical_cluster or "",
        }
        if self.settings.identity_pool:
            fields["bearer.auth.identity.pool.id"] = self.settings.identity_pool
        return fields

    def refused(self, by: str, what: str) -> None:
        """A broker or the registry refused our token (`what`: its own words); kept to name the cause."""
        with self._lock:
            token = self._token.token if self._token is not None else ""
            self._refused = (self._clock(), f"{by} refused the managed identity's token ({what})", token)
            # Never hand out a refused token again: the next client built, the registry's next request and
            # librdkafka's next refresh ask the endpoint anew (it may have been a bad token, not a bad identity).
            self._refresh_at = 0.0

    def explain(self) -> str | None:
        """Why our clients cannot sign in now, if something says so: the endpoint's last failure, or the last
        refusal with what the token says about itself and whether the issuer's published keys verify it."""
        now = self._clock()
        if self._failure is not None and now - self._failure[0] < _RECENT_S:
            return f"the managed identity gave no token for {self.settings.scope}: {self._failure[1]}"
        if self._refused is None or now - self._refused[0] >= _RECENT_S:
            return None
        _, what, token = self._refused
        described = tokens.describe(token, now, self.settings.scope)
        if not described.startswith("audience "):  # the token's own claims already say why
            return f"{what}: {described}"
        return f"{what}: {described}; {signature_check(token)}"


class _CollectorPause:
    """Automatic cyclic collection paused while any of our callbacks runs on a librdkafka thread; nested and
    concurrent callbacks count, the last one out restores it, and a process that had it off keeps it off."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    def pause(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1

    def resume(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._was_enabled:
                gc.enable()


_COLLECTOR = _CollectorPause()


def signature_check(token: str) -> str:
    """Whether the issuer's published keys (its OIDC discovery's `jwks_uri`) verify the token's signature: a
    token signed by another key is refused for that alone. Audience and expiry are left to `tokens.describe`."""
    import jwt

    issuer = str(tokens.claims(token).get("iss") or "")
    if not issuer.startswith(("http://", "https://")):
        return "its issuer publishes no keys to check the signature against"
    try:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=_DISCOVERY_TIMEOUT_S) as resp:  # noqa: S310 - the token's issuer
            jwks_uri = json.loads(resp.read())["jwks_uri"]
        key = jwt.PyJWKClient(jwks_uri, timeout=int(_DISCOVERY_TIMEOUT_S)).get_signing_key_from_jwt(token)
        jwt.decode(
            token, key.key, algorithms=[tokens.header(token).get("alg", "RS256")], options={"verify_aud": False,
            "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )  # fmt: skip
    except jwt.PyJWKClientError as exc:
        return f"its signing key is not among the issuer's published keys ({_short(exc)})"
    except jwt.InvalidSignatureError:
        return "its signature does not verify with the issuer's published key of that id"
    except Exception as exc:  # noqa: BLE001 - the check is a diagnosis: it never fails the caller
        return f"its signature could not be checked ({type(exc).__name__})"
    return (
        "its signature verifies with the issuer's published keys, so the audience or issuer is not the one the "
        "verifier expects (ENTRA_TOKEN_SCOPE against the identity pool's filter)"
    )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
