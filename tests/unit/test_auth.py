"""Each client's authentication: the settings checked as a whole at indexing, the trigger's binding as the worker
writes it, the managed identity's tokens (cached, refreshed before expiry, failures named, never the token), and
the diagnosis of a refused token."""

from __future__ import annotations

import base64
import gc
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from settlement.core import tokens
from settlement.core.errors import ConfigError
from settlement.runtime.config import load_settings, load_trigger_settings
from settlement.runtime.identity import EntraSettings, ManagedIdentityTokens, TokenUnavailable

ROOT = Path(__file__).resolve().parents[2]
BASE = {"KAFKA_BOOTSTRAP_SERVERS": "b:1", "SCHEMA_REGISTRY_URL": "http://r", "KAFKA_CONSUMER_GROUP": "g"}
ENTRA = {
    **BASE,
    "KAFKA_AUTH": "entra",
    "SCHEMA_REGISTRY_AUTH": "entra",
    "ENTRA_TOKEN_SCOPE": "api://kafka/.default",
    "ENTRA_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
    "KAFKA_LOGICAL_CLUSTER": "lkc-abc",
    "CONFLUENT_IDENTITY_POOL_ID": "pool-xyz",
    "SCHEMA_REGISTRY_LOGICAL_CLUSTER": "lsrc-def",
    "KAFKA_TRIGGER_AUTH_MODE": "OAuthBearer",
    "KAFKA_TRIGGER_OAUTH_CLIENT_ID": "trigger-app",
    "KAFKA_TRIGGER_OAUTH_CLIENT_SECRET": "trigger-secret-Zq81",
    "KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT": "https://login.example/tenant/oauth2/v2.0/token",
}


def jwt_text(claims: dict[str, object], kid: str = "k1") -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'kid': kid})}.{part(claims)}.c2lnbmF0dXJl"


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (without(ENTRA, "ENTRA_TOKEN_SCOPE"), "ENTRA_TOKEN_SCOPE"),
        (without(ENTRA, "KAFKA_LOGICAL_CLUSTER"), "KAFKA_LOGICAL_CLUSTER"),
        (without(ENTRA, "CONFLUENT_IDENTITY_POOL_ID"), "CONFLUENT_IDENTITY_POOL_ID"),
        (without(ENTRA, "SCHEMA_REGISTRY_LOGICAL_CLUSTER"), "SCHEMA_REGISTRY_LOGICAL_CLUSTER"),
        (without(ENTRA, "KAFKA_TRIGGER_OAUTH_CLIENT_SECRET"), "KAFKA_TRIGGER_OAUTH_CLIENT_SECRET"),
        (without(ENTRA, "KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT"), "KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT"),
        ({**ENTRA, "KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT": "login.example/token"}, "KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT"),
        ({**ENTRA, "KAFKA_SASL_PASSWORD": "left-over"}, "KAFKA_SASL_PASSWORD"),
        ({**ENTRA, "KAFKA_AUTH": "keyless"}, "KAFKA_AUTH"),
        ({**ENTRA, "KAFKA_SECURITY_PROTOCOL": "SSL"}, "KAFKA_SECURITY_PROTOCOL"),
        ({**BASE, "ENTRA_TOKEN_SCOPE": "api://kafka/.default"}, "ENTRA_TOKEN_SCOPE"),
        ({**BASE, "SCHEMA_REGISTRY_LOGICAL_CLUSTER": "lsrc-1"}, "SCHEMA_REGISTRY_LOGICAL_CLUSTER"),
        ({**BASE, "KAFKA_TRIGGER_OAUTH_CLIENT_ID": "x"}, "KAFKA_TRIGGER_OAUTH_CLIENT_ID"),
        ({**BASE, "KAFKA_TRIGGER_AUTH_MODE": "Plain", "KAFKA_SASL_USERNAME": "key"}, "KAFKA_SASL_PASSWORD"),
    ],
)
def test_a_bad_or_half_set_combination_fails_at_indexing_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings = load_trigger_settings(env)
        load_settings(env)  # the protocol is checked when the clients' settings are read
        print(settings)
    assert caught.value.setting == named
    assert "trigger-secret-Zq81" not in str(caught.value) and "left-over" not in str(caught.value)


def test_entra_settings_give_oauthbearer_clients_with_confluents_extensions_and_a_custom_registry_bearer() -> None:
    trigger = load_trigger_settings(ENTRA)
    assert trigger.authentication_mode == "OAuthBearer"
    assert trigger.credentials == {
        "o_auth_bearer_client_id": "%KAFKA_TRIGGER_OAUTH_CLIENT_ID%",
        "o_auth_bearer_client_secret": "%KAFKA_TRIGGER_OAUTH_CLIENT_SECRET%",
        "o_auth_bearer_token_endpoint_url": "%KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT%",
    }
    settings = load_settings(ENTRA)
    assert settings.entra == EntraSettings(
        "api://kafka/.default",
        "11111111-2222-3333-4444-555555555555",
        {"logicalCluster": "lkc-abc", "identityPoolId": "pool-xyz"},
        "lsrc-def",
        "pool-xyz",
    )
    with pytest.raises(ConfigError, match="KAFKA_AUTH"):
        settings.producer_conf()  # no tokens plugged in: never a client without credentials
    from settlement.runtime import with_identity

    plugged = with_identity(
        settings, ManagedIdentityTokens(settings.entra, lambda _id: FakeCredential([60.0]), clock=lambda: 1000.0)
    )  # type: ignore[arg-type]
    conf = plugged.producer_conf()
    assert (conf["security.protocol"], conf["sasl.mechanisms"]) == ("SASL_SSL", "OAUTHBEARER")
    assert "sasl.username" not in conf and "sasl.oauthbearer.method" not in conf  # never librdkafka's azure_imds
    token, expiry, principal, extensions = conf["oauth_cb"]("")
    assert extensions == {"logicalCluster": "lkc-abc", "identityPoolId": "pool-xyz"}
    assert (principal, expiry) == ("object-1", 1060.0)
    registry = plugged.registry_conf()
    assert registry["bearer.auth.credentials.source"] == "CUSTOM"
    fields = registry["bearer.auth.custom.provider.function"](registry["bearer.auth.custom.provider.config"])
    assert fields == {
        "bearer.auth.token": token,
        "bearer.auth.logical.cluster": "lsrc-def",
        "bearer.auth.identity.pool.id": "pool-xyz",
    }
    assert token not in repr(plugged)


def test_the_registry_client_accepts_the_custom_bearer_and_sends_confluents_headers() -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    settings = load_settings(ENTRA)
    from settlement.runtime import with_identity

    plugged = with_identity(
        settings, ManagedIdentityTokens(settings.entra, lambda _id: FakeCredential([60.0]), clock=lambda: 1000.0)
    )  # type: ignore[arg-type]
    client = SchemaRegistryClient(plugged.registry_conf())
    headers: dict[str, str] = {}
    client._rest_client.handle_bearer_auth(headers)
    assert headers["Authorization"].startswith("Bearer ey")
    assert (headers["target-sr-cluster"], headers["Confluent-Identity-Pool-Id"]) == ("lsrc-def", "pool-xyz")


@dataclass
class FakeToken:
    token: str
    expires_on: int


class FakeCredential:
    """azure-identity's credential as our code uses it: get_token(scope), tokens of the given lives."""

    def __init__(self, lives: list[float], clock: list[float] | None = None) -> None:
        self.lives = lives
        self.clock = clock or [1000.0]
        self.calls = 0
        self.fail: Exception | None = None

    def get_token(self, *scopes: str) -> FakeToken:
        if self.fail is not None:
            raise self.fail
        self.calls += 1
        now = self.clock[0]
        exp = int(now + self.lives[min(self.calls - 1, len(self.lives) - 1)])
        claims = {"aud": "api://kafka", "iss": "http://issuer.invalid/", "oid": "object-1", "exp": exp}
        return FakeToken(jwt_text({**claims, "n": self.calls}), exp)


def test_a_token_is_reused_until_80_percent_of_its_life_then_refreshed() -> None:
    clock = [1000.0]
    credential = FakeCredential([60.0], clock)
    tokens_ = ManagedIdentityTokens(ENTRA_SETTINGS, lambda _id: credential, clock=lambda: clock[0])
    first = tokens_.token()
    clock[0] = 1047.0
    assert tokens_.token() is first and credential.calls == 1
    clock[0] = 1048.5  # past 48 s of 60
    second = tokens_.token()
    assert second is not first and credential.calls == 2 and tokens_.fetched == 2


def test_a_due_refresh_asks_the_identity_endpoint_not_azure_identitys_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """azure-identity's ManagedIdentityCredential, unmodified, against an App Service identity endpoint on the
    loopback: its own cache keeps a one-hour token until 5 minutes before expiry, so a refresh at 80 % of its life
    must still reach the endpoint and get a new token, not the cached one with 12 minutes left."""
    issued: list[int] = []

    class Endpoint(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            assert self.headers.get("X-IDENTITY-HEADER") == "local-header"
            issued.append(len(issued) + 1)
            expires = int(time.time()) + 3600
            body = json.dumps(
                {
                    "access_token": jwt_text({"aud": "api://kafka", "exp": expires, "n": len(issued)}),
                    "expires_on": str(expires),
                    "resource": "api://kafka",
                    "token_type": "Bearer",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", "local-header")
        clock = [time.time()]
        tokens_ = ManagedIdentityTokens(ENTRA_SETTINGS, clock=lambda: clock[0])
        first = tokens_.token()
        assert tokens_.token() is first and issued == [1]  # our cache: once per 80 % of a life
        clock[0] += 2881  # past 80 % of its hour (the library's clock has not moved: its cache would answer)
        second = tokens_.token()
        assert issued == [1, 2] and second.token != first.token and tokens_.fetched == 2
    finally:
        server.shutdown()
        server.server_close()


def test_the_collector_is_paused_while_librdkafka_runs_the_callback_and_restored_after() -> None:
    """oauth_cb runs on librdkafka's background thread: a collection there could destroy a client on its own
    thread, which aborts the process. Overlapping callbacks (one per client) restore the collector only when the
    last one returns, and a process that had it off keeps it off."""
    seen: list[bool] = []
    inner: list[bool] = []

    class Credential(FakeCredential):
        def get_token(self, *scopes: str) -> FakeToken:
            seen.append(gc.isenabled())
            if len(seen) == 1:  # a second client's callback runs while this one waits on the endpoint
                other.oauth_cb("")
                inner.append(gc.isenabled())
            return super().get_token(*scopes)

    clock = [1000.0]
    tokens_ = ManagedIdentityTokens(ENTRA_SETTINGS, lambda _id: Credential([60.0], clock), clock=lambda: clock[0])
    other = ManagedIdentityTokens(ENTRA_SETTINGS, lambda _id: Credential([60.0], clock), clock=lambda: clock[0])
    assert gc.isenabled()
    tokens_.oauth_cb("")
    assert seen == [False, False] and inner == [False] and gc.isenabled()
    credential = FakeCredential([60.0], clock)
    credential.fail = OSError("endpoint down")
    failing = ManagedIdentityTokens(ENTRA_SETTINGS, lambda _id: credential, clock=lambda: clock[0])
    with pytest.raises(TokenUnavailable):
        failing.oauth_cb("")
    assert gc.isenabled()
    gc.disable()
    try:
        clock[0] += 100
        tokens_.oauth_cb("")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_no_token_is_a_retried_batch_naming_the_cause_and_later_the_identity_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [1000.0]
    credential = FakeCredential([60.0], clock)
    credential.fail = ConnectionRefusedError("[Errno 111] Connection refused")
    tokens_ = ManagedIdentityTokens(ENTRA_SETTINGS, lambda _id: credential, clock=lambda: clock[0])
    with pytest.raises(TokenUnavailable, match="ConnectionRefusedError") as caught:
        tokens_.oauth_cb("")
    assert "api://kafka/.default" in str(caught.value)
    assert "Connection refused" in (tokens_.explain() or "")
    credential.fail = None
    token = tokens_.oauth_cb("")[0]
    assert tokens_.explain() is None
    assert token not in caplog.text


ENTRA_SETTINGS = EntraSettings("api://kafka/.default", None, {"logicalCluster": "l", "identityPoolId": "p"}, None, "p")


def test_a_refused_token_is_explained_from_its_claims_without_its_text() -> None:
    clock = [1000.0]
    credential = FakeCredential([-30.0], clock)  # handed out already expired
    tokens_ = ManagedIdentityTokens(ENTRA_SETTINGS, lambda _id: credential, clock=lambda: clock[0])
    token = tokens_.token().token
    tokens_.refused("the broker", "SASL authentication error: invalid_token")
    why = tokens_.explain() or ""
    assert "the broker refused the managed identity's token (SASL authentication error: invalid_token)" in why
    assert "expired at 1970-01-01T00:16:10Z (30 s before it was refused)" in why
    assert token not in why
    clock[0] += 600  # an old refusal is no longer offered as a cause
    assert tokens_.explain() is None


@pytest.mark.parametrize(
    ("claims", "scope", "expected"),
    [
        ({"aud": "api://other", "exp": 2000}, "api://kafka/.default", "its audience 'api://other' is not the"),
        ({"aud": "api://kafka", "exp": 900}, "api://kafka/.default", "it expired at"),
        ({"aud": "api://kafka", "exp": 2000, "nbf": 1500}, None, "it is not valid before"),
        ({"aud": ["api://kafka", "x"], "exp": 2000}, "api://kafka/.default", "audience ['api://kafka', 'x']"),
        # Entra v2: the application id as aud for api://<id> (no mismatch reported)
        ({"aud": "0b1c", "exp": 2000}, "api://0b1c/.default", "audience '0b1c', issuer"),
    ],
)
def test_describe_names_what_the_token_says(claims: dict[str, object], scope: str | None, expected: str) -> None:
    described = tokens.describe(jwt_text(claims, kid="key-7"), 1000.0, scope)
    assert expected in described
    assert "signing key id 'key-7'" in described
    assert tokens.describe("not a jwt", 0, None) == "the token is not a readable JWT"


def test_the_trigger_binding_carries_the_extensions_oauthbearer_mode_and_setting_names_only() -> None:
    env = {**os.environ, **ENTRA, "SETTLEMENT_WARM_START": "false"}
    code = (
        "import json, function_app\n"
        "from localrun.platform.indexing import index_app\n"
        "f = next(f for f in index_app(function_app.app) if f.name == 'settle_user_trades')\n"
        "print(json.dumps(f.binding('kafkaTrigger')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-600:]
    binding = json.loads(done.stdout.strip().splitlines()[-1])
    assert binding["authenticationMode"] == "OAUTHBEARER"
    assert binding["oAuthBearerMethod"] == "OIDC"
    assert binding["oAuthBearerClientSecret"] == "%KAFKA_TRIGGER_OAUTH_CLIENT_SECRET%"
    assert binding["oAuthBearerClientId"] == "%KAFKA_TRIGGER_OAUTH_CLIENT_ID%"
    assert binding.get("oAuthBearerScope") is None  # unset: not named, so the host resolves nothing missing
    assert binding.get("password") is None and binding.get("username") is None
    assert "trigger-secret-Zq81" not in done.stdout


def test_the_emulated_extension_signs_in_as_the_binding_says() -> None:
    from localrun.platform.binding import listener_auth

    settings = {"CID": "trigger-app", "SECRET": "s3cr3t", "URL": "https://issuer/token", "EXT": "logicalCluster=lkc-1"}
    oidc = {
        "authenticationMode": "OAUTHBEARER",
        "protocol": "SASLSSL",
        "oAuthBearerMethod": "OIDC",
        "oAuthBearerClientId": "%CID%",
        "oAuthBearerClientSecret": "%SECRET%",
        "oAuthBearerTokenEndpointUrl": "%URL%",
        "oAuthBearerExtensions": "%EXT%",
    }
    assert listener_auth(oidc, settings) == {
        "sasl.mechanism": "OAUTHBEARER",
        "security.protocol": "sasl_ssl",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.client.id": "trigger-app",
        "sasl.oauthbearer.client.secret": "s3cr3t",
        "sasl.oauthbearer.token.endpoint.url": "https://issuer/token",
        "sasl.oauthbearer.extensions": "logicalCluster=lkc-1",
    }
    plain = {"authenticationMode": "SCRAMSHA512", "protocol": "SASLSSL", "username": "%CID%", "password": "%SECRET%"}
    assert listener_auth(plain, settings) == {
        "sasl.username": "trigger-app",
        "sasl.password": "s3cr3t",
        "sasl.mechanism": "SCRAM-SHA-512",
        "security.protocol": "sasl_ssl",
    }
    assert listener_auth({"authenticationMode": "NOTSET", "protocol": "NOTSET"}, settings) == {}


def test_an_entra_v2_audience_is_the_application_id_of_the_scope() -> None:
    described = tokens.describe(jwt_text({"aud": "0b1c", "exp": 2000}), 1000.0, "api://0b1c/.default")
    assert "is not the" not in described
    assert "is not the 'api://0b1c'" in tokens.describe(jwt_text({"aud": "ffff", "exp": 2000}), 1000.0, "api://0b1c")
