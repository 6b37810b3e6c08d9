"""What a bearer token says about itself, read without verifying it: enough to name why a broker or a registry
refused it (expired, another audience, another issuer), never enough to trust it. Pure: no clock, no I/O; the
token's text never appears in what these functions return."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any


def _segment(token: str, index: int) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    raw = parts[index] + "=" * (-len(parts[index]) % 4)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(raw))
    except (binascii.Error, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def claims(token: str) -> dict[str, Any]:
    """The JWT's payload, unverified; {} for anything that is not a readable JWT."""
    return _segment(token, 1)


def header(token: str) -> dict[str, Any]:
    """The JWT's header (`alg`, `kid`), unverified; {} for anything that is not a readable JWT."""
    return _segment(token, 0)


def audience_of(scope: str) -> str:
    """The audience a token asked for with `scope` carries: the resource, without Entra's `/.default`."""
    return scope[: -len("/.default")] if scope.endswith("/.default") else scope


def _when(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(token: str, now: float, scope: str | None = None) -> str:
    """One line on why a verifier may refuse this token, from its own claims: expired (and when), not yet valid,
    an audience other than `scope` asks for, else its audience, issuer and signing key id for the reader to
    compare with what the verifier trusts. Claims that name a principal are shown; the token itself never."""
    body, head = claims(token), header(token)
    if not body:
        return "the token is not a readable JWT"
    reasons: list[str] = []
    exp, nbf = body.get("exp"), body.get("nbf")
    if isinstance(exp, int | float) and exp <= now:
        reasons.append(f"it expired at {_when(exp)} ({now - exp:.0f} s before it was refused)")
    if isinstance(nbf, int | float) and nbf > now:
        reasons.append(f"it is not valid before {_when(nbf)}")
    aud = body.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    # Entra's v2 access tokens carry the resource's application id as `aud`, not its `api://<id>` URI.
    asked = audience_of(scope) if scope is not None else None
    if asked is not None and asked not in audiences and asked.removeprefix("api://") not in audiences:
        reasons.append(f"its audience {aud!r} is not the {asked!r} that was asked for")
    facts = f"audience {aud!r}, issuer {body.get('iss')!r}, signing key id {head.get('kid')!r}"
    if isinstance(exp, int | float) and exp > now:
        facts += f", valid until {_when(exp)}"
    return "; ".join([*reasons, facts])
