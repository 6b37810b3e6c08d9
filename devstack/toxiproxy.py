"""Shopify toxiproxy: built once from the Go module proxy, started with the 3-broker stack, driven over HTTP.

Why toxiproxy: it is a plain TCP proxy whose faults (latency with jitter, a bandwidth cap, TCP resets, a
blackhole) are added and removed at run time through a small HTTP API, and a toxic applies to the
connections already open as well as to new ones, which is what a fault in the middle of a run needs.
The API is a handful of JSON calls, so it is driven with urllib rather than a client library.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from devstack import locks
from devstack.errors import StackError
from devstack.fetch import CACHE

VERSION = "v2.12.0"
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"


def binary(cache: Path = CACHE) -> Path:
    """Where the built server lives (the gitignored cache; one folder per version)."""
    return cache / f"toxiproxy-{VERSION.lstrip('v')}" / "server"


def ensure_built(cache: Path = CACHE) -> Path:
    """Build the toxiproxy server with the machine's Go on first use (about 35 s); later calls find it."""
    target = binary(cache)
    with locks.held("toxiproxy", cache):
        if not target.exists():
            _build(target, cache)
    return target


def _build(target: Path, cache: Path) -> None:
    if shutil.which("go") is None:
        raise StackError(
            "go not found on PATH: the 3-broker stack builds toxiproxy with Go 1.22+ (apt-get install golang)"
        )
    log = cache / "logs" / "build-toxiproxy.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(target.parent), "GOFLAGS": "-mod=mod"}
    with log.open("w") as out:
        proc = subprocess.run(["go", "install", f"{MODULE}@{VERSION}"], stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0 or not target.exists():
        raise StackError(f"building toxiproxy failed (exit {proc.returncode}); see {log}")


class Toxiproxy:
    """The HTTP API of one toxiproxy server: proxies, then toxics on them."""

    def __init__(self, host: str, port: int) -> None:
        self.base = f"http://{host}:{port}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - a local http URL we built
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise StackError(
                f"toxiproxy {method} {path}: HTTP {exc.code} {exc.read().decode(errors='replace')}"
            ) from None
        return json.loads(raw) if raw else None

    def ready(self) -> bool:
        """True once the API answers."""
        try:
            self._call("GET", "/version")
        except (OSError, StackError):
            return False
        return True

    def create_proxy(self, name: str, listen: str, upstream: str) -> None:
        """A proxy listening on `listen` and forwarding to `upstream` (host:port each)."""
        self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})

    def proxies(self) -> dict[str, Any]:
        """Every proxy with its toxics, by name."""
        return dict(self._call("GET", "/proxies"))

    def add_toxic(
        self,
        proxy: str,
        name: str,
        kind: str,
        attributes: dict[str, int],
        stream: str = "downstream",
        toxicity: float = 1.0,
    ) -> None:
        """Add a toxic (`latency`, `bandwidth`, `reset_peer`, `timeout`, ...) to one direction of a proxy:
        `downstream` is server to client, `upstream` client to server."""
        body = {"name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        self._call("POST", f"/proxies/{proxy}/toxics", body)

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def reset(self) -> None:
        """Remove every toxic and re-enable every proxy: the healthy network later rows start from."""
        self._call("POST", "/reset")

    @contextmanager
    def toxics(
        self, proxies: list[str], kind: str, attributes: dict[str, int], both_ways: bool = True
    ) -> Iterator[None]:
        """The same toxic on each named proxy (both directions unless told) while the block runs."""
        added: list[tuple[str, str]] = []
        try:
            for proxy in proxies:
                for stream in ("downstream", "upstream") if both_ways else ("downstream",):
                    name = f"{kind}-{stream}"
                    self.add_toxic(proxy, name, kind, attributes, stream)
                    added.append((proxy, name))
            yield
        finally:
            for proxy, name in added:
                with suppress(StackError):
                    self.remove_toxic(proxy, name)
