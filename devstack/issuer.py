"""A local token issuer: signed JWTs (RS256, a key pair made at start) for the broker's and the registry's own
verifiers, which check them against the JWKS this serves. It answers three ways, each in the shape its real
counterpart uses:

- OIDC discovery (`/.well-known/openid-configuration`) and the JWKS (`/jwks`), which Kafka's
  `OAuthBearerValidatorCallbackHandler` and Quarkus OIDC (the registry) read;
- the App Service managed-identity endpoint (`/msi/token`, what `IDENTITY_ENDPOINT` names on Functions): GET with
  `api-version=2019-08-01`, `resource` and, for a user-assigned identity, `client_id`, the header
  `X-IDENTITY-HEADER`; the answer `{"access_token", "expires_on" (epoch seconds, as text), "resource",
  "token_type", "client_id"}` (what msal's `_obtain_token_on_app_service`, under azure-identity, sends and reads);
- an OAuth client-credentials token endpoint (`/token`) for the trigger's emulated extension (librdkafka's `oidc`
  method: POST `grant_type=client_credentials&scope=…`, the client id and secret in HTTP Basic), answering
  `{"access_token", "token_type", "expires_in"}`; a client may hold two secrets at once (a rotation's overlap).

`/admin/*` is the tests' handle (loopback only): faults (`expired`: tokens whose `exp` has passed although the
answer says they are valid; `rogue-key`: signed by a key the JWKS does not hold), client secrets added and
revoked, and counts of tokens issued. Tokens live `--lifetime` seconds (60 by default, so that every run
refreshes several times). Run as `python -m devstack.issuer`; devstack starts it before the broker.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "api://trade-settlement-local"  # the resource the local broker and registry expect
CLIENTS_ENV = "DEVSTACK_ISSUER_CLIENTS"  # JSON {client id: secret}: never on the command line
IDENTITY_HEADER_ENV = "DEVSTACK_IDENTITY_HEADER"
_NAMESPACE = uuid.UUID("6f1c2f43-5c1e-4a8a-9d0e-0d9e2b7a3c11")


def object_id(client_id: str | None) -> str:
    """The principal (object) id of an identity: stable per client id, as Entra's are."""
    return str(uuid.uuid5(_NAMESPACE, client_id or "system-assigned"))


class Issuer:
    """Keys, registered clients, faults and counts; thread-safe."""

    def __init__(self, url: str, lifetime_s: int, identity_header: str, clients: dict[str, list[str]]) -> None:
        self.url = url
        self.lifetime_s = lifetime_s
        self.identity_header = identity_header
        self.clients = clients
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        self.rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.fault: str | None = None
        self.counts = {"managed_identity": 0, "client_credentials": 0, "refused": 0}
        self.lock = threading.Lock()

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks",
            "token_endpoint": f"{self.url}/token",
            "authorization_endpoint": f"{self.url}/authorize",
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "grant_types_supported": ["client_credentials"],
        }

    def issue(self, audience: str, subject: str, app_id: str, kind: str) -> tuple[str, int]:
        """A signed token for `audience` and its expiry (what the answer says, faults aside)."""
        now = int(time.time())
        expires = now + self.lifetime_s
        with self.lock:
            fault = self.fault
            self.counts[kind] += 1
        claims = {
            "iss": self.url,
            "aud": audience,
            "sub": subject,
            "oid": subject,
            "appid": app_id,
            "azp": app_id,
            "iat": now,
            "nbf": now,
            # Expired by more than the verifiers' clock skew (Kafka allows 30 s).
            "exp": now - 300 if fault == "expired" else expires,
        }
        key, kid = (self.rogue, "rogue-" + self.kid) if fault == "rogue-key" else (self.key, self.kid)
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid}), expires


def _audience(scope_or_resource: str) -> str:
    return scope_or_resource.removesuffix("/.default")


class Handler(BaseHTTPRequestHandler):
    issuer: Issuer

    def log_message(self, format: str, *args: Any) -> None:
        return  # no access log: a request line could carry a client id and the logs are grepped for secrets

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: int, body: dict[str, Any]) -> None:
        with self.issuer.lock:
            self.issuer.counts["refused"] += 1
        self._send(status, body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/.well-known/openid-configuration":
            self._send(200, self.issuer.discovery())
        elif url.path == "/jwks":
            self._send(200, self.issuer.jwks())
        elif url.path == "/msi/token":
            self._managed_identity(parse_qs(url.query))
        elif url.path == "/admin/stats":
            with self.issuer.lock:
                self._send(
                    200, {**self.issuer.counts, "fault": self.issuer.fault, "lifetime_s": self.issuer.lifetime_s}
                )
        else:
            self._send(404, {"error": "not_found"})

    def _managed_identity(self, query: dict[str, list[str]]) -> None:
        """App Service's endpoint: the header proves the caller runs in the app (the platform's secret)."""
        if self.headers.get("X-IDENTITY-HEADER") != self.issuer.identity_header:
            self._refuse(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"})
            return
        resource = (query.get("resource") or [""])[0]
        if (query.get("api-version") or [""])[0] != "2019-08-01" or not resource:
            self._refuse(400, {"statusCode": 400, "message": "api-version 2019-08-01 and resource are required"})
            return
        client_id = (query.get("client_id") or [""])[0] or None
        token, expires = self.issuer.issue(
            _audience(resource), object_id(client_id), client_id or object_id(None), "managed_identity"
        )
        self._send(
            200,
            {
                "access_token": token,
                "expires_on": str(expires),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id or object_id(None),
            },
        )

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path == "/token":
            self._client_credentials(parse_qs(body.decode()))
        elif url.path.startswith("/admin/"):
            self._admin(url.path, json.loads(body or b"{}"))
        else:
            self._send(404, {"error": "not_found"})

    def _client_credentials(self, form: dict[str, list[str]]) -> None:
        client_id, secret = None, None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        client_id = client_id or (form.get("client_id") or [""])[0] or None
        secret = secret or (form.get("client_secret") or [""])[0] or None
        if (form.get("grant_type") or [""])[0] != "client_credentials":
            self._refuse(400, {"error": "unsupported_grant_type"})
            return
        with self.issuer.lock:
            known = client_id is not None and secret in self.issuer.clients.get(client_id, [])
        if not known:
            self._refuse(401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"})
            return
        assert client_id is not None
        scope = (form.get("scope") or [AUDIENCE])[0].split()[0]
        token, _ = self.issuer.issue(_audience(scope), object_id(client_id), client_id, "client_credentials")
        self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": self.issuer.lifetime_s})

    def _admin(self, path: str, body: dict[str, Any]) -> None:
        issuer = self.issuer
        with issuer.lock:
            if path == "/admin/fault":
                issuer.fault = body.get("fault")
            elif path == "/admin/lifetime":
                issuer.lifetime_s = int(body["seconds"])
            elif path == "/admin/clients/add":
                issuer.clients.setdefault(body["client_id"], []).append(body["secret"])
            elif path == "/admin/clients/revoke":
                held = issuer.clients.get(body["client_id"], [])
                issuer.clients[body["client_id"]] = [s for s in held if s != body["secret"]]
            else:
                self._send(404, {"error": "not_found"})
                return
        self._send(200, {"ok": True})


def serve(port: int, lifetime_s: int) -> None:
    url = f"http://127.0.0.1:{port}"
    clients = {k: [v] for k, v in json.loads(os.environ.get(CLIENTS_ENV, "{}")).items()}
    header = os.environ.get(IDENTITY_HEADER_ENV) or secrets.token_hex(16)
    Handler.issuer = Issuer(url, lifetime_s, header, clients)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.issuer", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lifetime", type=int, default=60, help="seconds a token lives (default 60)")
    args = parser.parse_args(argv)
    serve(args.port, args.lifetime)


if __name__ == "__main__":
    main()
