"""Start, stop and inspect the local broker + registry.

State (ports, pids, logs, broker data) lives in one gitignored folder, `.stack/` by default
(`DEVSTACK_HOME` overrides it), so `up` twice is a no-op and `down` finds what `up` started.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from devstack import locks
from devstack.errors import StackError
from devstack.fetch import ROOT, Artifacts, fetch, require_tools

HOST = "127.0.0.1"
LOG4J_CONFIG = Path(__file__).resolve().parent / "log4j2.xml"
PORT_SETTINGS = (
    "DEVSTACK_KAFKA_PORT",
    "DEVSTACK_CONTROLLER_PORT",
    "DEVSTACK_REGISTRY_PORT",
    "DEVSTACK_ISSUER_PORT",
    "DEVSTACK_OAUTH_PORT",
    "DEVSTACK_SECURE_REGISTRY_PORT",
)
TRIGGER_CLIENT_ID = "trade-settlement-trigger"  # the trigger's OIDC client at the local issuer
TOKEN_LIFETIME_S = int(os.environ.get("DEVSTACK_TOKEN_LIFETIME", "60"))
# Readiness probes fail by design until the broker is up: their client logs go nowhere.
_PROBE_LOG = logging.getLogger("devstack.probe")
_PROBE_LOG.addHandler(logging.NullHandler())
_PROBE_LOG.propagate = False
START_TIMEOUT_S = float(os.environ.get("DEVSTACK_START_TIMEOUT", "120"))


@dataclass
class StackState:
    """What `up` started: enough for `down`, `status` and a broker restart to act on."""

    kafka_port: int
    controller_port: int
    registry_port: int
    kafka_pid: int
    registry_pid: int
    kafka_lib: str
    registry_jar: str
    # The token issuer (devstack/issuer.py), the broker's OAUTHBEARER listener beside the plain one, and the
    # registry that requires the issuer's tokens (started on first use: `secure_registry`).
    issuer_port: int = 0
    issuer_pid: int = 0
    oauth_port: int = 0
    identity_header: str = ""  # the managed-identity endpoint's X-IDENTITY-HEADER (the platform's secret)
    trigger_secret: str = ""  # the trigger's OIDC client secret at the issuer
    secure_registry_port: int = 0
    secure_registry_pid: int = 0

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    @property
    def oauth_bootstrap_servers(self) -> str:
        """The SASL_PLAINTEXT OAUTHBEARER listener: the broker verifies each token's signature (the issuer's JWKS),
        audience and issuer, and re-authenticates each connection before its token expires."""
        return f"{HOST}:{self.oauth_port}"

    @property
    def issuer_url(self) -> str:
        return f"http://{HOST}:{self.issuer_port}"

    @property
    def identity_endpoint(self) -> str:
        """What `IDENTITY_ENDPOINT` names on Functions: the App Service managed-identity endpoint."""
        return f"{self.issuer_url}/msi/token"

    @property
    def secure_registry_url(self) -> str:
        return f"http://{HOST}:{self.secure_registry_port}/apis/ccompat/v7"

    @property
    def registry_url(self) -> str:
        return f"http://{HOST}:{self.registry_port}/apis/ccompat/v7"


def home() -> Path:
    """The state folder: one place for ports, pids, logs and broker data."""
    return Path(os.environ.get("DEVSTACK_HOME", ROOT / ".stack"))


def _state_file() -> Path:
    return home() / "state.json"


def _log(name: str) -> Path:
    return home() / "logs" / f"{name}.log"


def load_state() -> StackState | None:
    """The recorded state, or None when nothing was started."""
    path = _state_file()
    if not path.exists():
        return None
    return StackState(**json.loads(path.read_text()))


def _save_state(state: StackState) -> None:
    home().mkdir(parents=True, exist_ok=True)
    _state_file().write_text(json.dumps(asdict(state), indent=2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers kill(0); reap it if so.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


# Ports handed out by `free_port`, machine-wide, and how long a claim holds (a JVM binds well within it).
PORT_CLAIMS = Path(tempfile.gettempdir()) / "devstack-ports"
PORT_CLAIM_S = 300.0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _choose_port(setting: str, taken: set[int]) -> int:
    raw = os.environ.get(setting)
    if raw:
        try:
            port = int(raw)
        except ValueError:
            raise StackError(f"{setting}={raw!r} is not a port number") from None
        if not _port_free(port):
            raise StackError(f"port {port} ({setting}) is already in use on {HOST}; set {setting} to a free port")
        return port
    return free_port(taken)


def free_port(taken: set[int]) -> int:
    """A free port for a service started after this returns, drawn below the kernel's ephemeral range: a port
    the kernel handed out for port 0 is one it may hand any process as a connection's source port before the
    service binds it (met with four test processes connecting at once: a registry that could not bind).

    A port handed out is claimed for `PORT_CLAIM_S` across every process of the machine (whatever its checkout or
    stack home): a service binds seconds after its port is chosen, and another process starting its own stack or
    cluster in that window drew the same free port (a registry found its port in use, and every test of its
    process failed at set-up)."""
    first_ephemeral = _ephemeral_range_start()
    with locks.held("ports", PORT_CLAIMS):
        now = time.time()
        claims_file = PORT_CLAIMS / "claimed.json"
        try:
            claims = {int(k): v for k, v in json.loads(claims_file.read_text()).items() if now - v < PORT_CLAIM_S}
        except (OSError, ValueError, AttributeError):
            claims = {}
        while True:
            port = random.randrange(max(1024, first_ephemeral - 12000), first_ephemeral)
            if port not in taken and port not in claims and _port_free(port):
                claims[port] = now
                claims_file.write_text(json.dumps(claims))
                return port


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _cluster_id() -> str:
    """A random cluster id as Kafka writes one (URL-safe base64 of 16 bytes), never one starting with '-': the
    storage tool's argument parser reads such an id as an option ("--cluster-id/-t: expected one argument"), one
    start in 64; Kafka's own `Uuid.randomUuid` draws again for the same reason."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _server_properties(state: StackState, data_dir: Path) -> Path:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{HOST}:{state.controller_port}",
        "listeners": (
            f"PLAINTEXT://{HOST}:{state.kafka_port},OAUTH://{HOST}:{state.oauth_port},"
            f"CONTROLLER://{HOST}:{state.controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://{HOST}:{state.kafka_port},OAUTH://{HOST}:{state.oauth_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OAUTH:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        **_oauth_listener(state),
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Production parity: Confluent Cloud does not auto-create topics, so neither does the local broker.
        "auto.create.topics.enable": "false",
        # No fsync per message (`log.flush.interval.messages` stays at Kafka's default): Kafka and Confluent Cloud
        # make an acknowledged record durable by replication and leave flushing to the OS. A broker process
        # that stops or is killed keeps its writes in the page cache, so no test here can lose an acknowledged
        # record without it; forcing one fsync per append made every acknowledgement wait for the disk, which
        # held one instance to about 45,000 rec/s (75,000 without) and cost the broker twice the CPU.
    }
    path = home() / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def _oauth_listener(state: StackState) -> dict[str, str]:
    """The OAUTH listener: Kafka's own JWT validator against the issuer's JWKS, with the audience and issuer
    Confluent Cloud's identity pools check. A session lasts until its token expires (KIP-368): the client must
    re-authenticate with a fresh token or be disconnected, so an expired token is refused mid-stream too."""
    from devstack.issuer import AUDIENCE

    prefix = "listener.name.oauth.oauthbearer."
    return {
        "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
        f"{prefix}sasl.jaas.config": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;",
        f"{prefix}sasl.server.callback.handler.class": (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
        ),
        f"{prefix}connections.max.reauth.ms": "3600000",
        # Kafka 4.1's handler builds `sasl.oauthbearer.jwt.validator.class`, by default a DefaultJwtValidator made
        # without a key resolver, which delegates to ClientJwtValidator: claims only, no signature (a token signed
        # by any key, for any audience, was accepted here). BrokerJwtValidator builds its resolver from the JWKS URL
        # and checks signature, audience, issuer and expiry (jose4j, 30 s clock skew).
        # Set at the broker's level and for the listener's mechanism: which of the two the validator reads is not
        # documented the same way across 3.x and 4.x.
        **{
            f"{where}sasl.oauthbearer.{key}": value
            for where in ("", prefix)
            for key, value in (
                ("jwt.validator.class", "org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator"),
                ("jwks.endpoint.url", f"{state.issuer_url}/jwks"),
                ("expected.audience", AUDIENCE),
                ("expected.issuer", state.issuer_url),
            )
        },
    }


def _java(classpath: str, main: list[str], heap: str, *props: str) -> list[str]:
    return ["java", f"-Xmx{heap}", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", *props, "-cp", classpath, *main]


def _spawn(cmd: list[str], log_name: str) -> int:
    log = _log(log_name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return proc.pid


def _start_broker(state: StackState) -> int:
    classpath = f"{state.kafka_lib}/*"
    # Kafka 4.x fetches a JWKS only from a URL this system property allows.
    allowed = f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={state.issuer_url}/jwks"
    return _spawn(_java(classpath, ["kafka.Kafka", str(home() / "server.properties")], "768m", allowed), "kafka")


def _start_issuer(state: StackState) -> int:
    log = _log("issuer")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DEVSTACK_ISSUER_CLIENTS": json.dumps({TRIGGER_CLIENT_ID: state.trigger_secret}),
        "DEVSTACK_IDENTITY_HEADER": state.identity_header,
    }
    cmd = [sys.executable, "-m", "devstack.issuer", "--port", str(state.issuer_port)]
    cmd += ["--lifetime", str(TOKEN_LIFETIME_S)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
            cwd=str(ROOT),
        )  # fmt: skip
    return proc.pid


def issuer_ready(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/jwks", timeout=timeout_s) as resp:  # noqa: S310 - http URL we built
            return bool(resp.status == 200)
    except OSError:
        return False


def _start_registry(state: StackState, port: int | None = None, *props: str, log: str = "registry") -> int:
    cmd = [
        "java",
        "-Xmx512m",
        f"-Dquarkus.http.port={port or state.registry_port}",
        f"-Dquarkus.http.host={HOST}",
        "-Dquarkus.http.access-log.enabled=false",
        *props,
        "-jar",
        state.registry_jar,
    ]
    return _spawn(cmd, log)


def _secure_registry_props(state: StackState) -> list[str]:
    """Apicurio 3's authentication (Quarkus OIDC, as a service application): every request needs a bearer token
    that the issuer signed (keys from its discovery's JWKS), for the broker's audience, unexpired."""
    from devstack.issuer import AUDIENCE

    return [
        "-Dquarkus.oidc.tenant-enabled=true",
        f"-Dquarkus.oidc.auth-server-url={state.issuer_url}",
        f"-Dquarkus.oidc.token-path={state.issuer_url}/token",
        "-Dquarkus.oidc.client-id=registry-api",
        f"-Dquarkus.oidc.token.audience={AUDIENCE}",
        f"-Dquarkus.oidc.token.issuer={state.issuer_url}",
        "-Dapicurio.auth.role-based-authorization=false",
        "-Dapicurio.auth.owner-only-authorization=false",
    ]


def secure_registry(state: StackState) -> StackState:
    """The registry that requires the issuer's tokens, started on first use (a second Apicurio, its own store):
    the keyless tests and `scripts/run.sh --auth entra` use it; the plain one serves everything else."""
    if state.secure_registry_pid and _alive(state.secure_registry_pid):
        return state
    state.secure_registry_port = _choose_port("DEVSTACK_SECURE_REGISTRY_PORT", {state.kafka_port, state.registry_port})
    _log("secure-registry").unlink(missing_ok=True)
    state.secure_registry_pid = _start_registry(
        state, state.secure_registry_port, *_secure_registry_props(state), log="secure-registry"
    )
    _save_state(state)
    # Without a token it answers 401: up, and refusing.
    _wait(
        "secure Schema Registry",
        state.secure_registry_pid,
        lambda: _answers(state.secure_registry_url),
        "secure-registry",
    )
    return state


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=2.0):  # noqa: S310 - http URL we built
            return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False


def broker_ready(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True once a metadata request succeeds: the broker is serving clients, not just listening."""
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "log_level": 0, "logger": _PROBE_LOG}
    admin = AdminClient(conf)
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - any failure here simply means "not ready yet"
        return False
    return True


def registry_ready(url: str, timeout_s: float = 2.0) -> bool:
    """True once the Confluent-compatible API answers."""
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout_s) as resp:  # noqa: S310 - http URL we built
            return bool(resp.status == 200)
    except OSError:
        return False


def _wait(what: str, pid: int, ready: Callable[[], bool], log_name: str) -> None:
    wait_started(what, pid, ready, _log(log_name))


def wait_started(what: str, pid: int, ready: Callable[[], bool], log: Path, timeout_s: float | None = None) -> None:
    """Until `ready()` (within `START_TIMEOUT_S` unless told); a process that exits first fails with the end of its
    log in the error, since the next `up` starts that log afresh."""
    timeout_s = START_TIMEOUT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if not _alive(pid):
            raise StackError(f"{what} exited during start-up; its log ({log}) ends:\n{log_tail(log)}")
        time.sleep(0.25)
    raise StackError(f"{what} did not come up within {timeout_s:.0f}s; see its log: {log}")


def log_tail(log: Path, lines: int = 15) -> str:
    """The last lines of a service's log, for an error that must say why it stopped."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


def _stop_pid(pid: int, timeout_s: float = 30.0) -> None:
    if not _alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while _alive(pid):
            time.sleep(0.05)


def is_running(state: StackState) -> bool:
    """Every process alive and both services answering."""
    return _processes_alive(state) and broker_ready(state.bootstrap_servers) and registry_ready(state.registry_url)


def _processes_alive(state: StackState) -> bool:
    return (
        _alive(state.kafka_pid) and _alive(state.registry_pid) and bool(state.issuer_pid) and _alive(state.issuer_pid)
    )


def up() -> tuple[StackState, bool]:
    """Start the stack, or return the running one. The flag says whether this call started it."""
    existing = load_state()
    if existing is not None:
        if _processes_alive(existing):
            # Starting, or slow to answer (a loaded machine): wait for it. Stopping a stack whose processes live
            # pulled it from under whoever was using it (several test processes share one).
            _wait("Kafka broker", existing.kafka_pid, lambda: broker_ready(existing.bootstrap_servers), "kafka")
            _wait("Schema Registry", existing.registry_pid, lambda: registry_ready(existing.registry_url), "registry")
            return existing, False
        down()
    require_tools()
    artifacts: Artifacts = fetch()
    taken: set[int] = set()
    ports = []
    for setting in PORT_SETTINGS:
        port = _choose_port(setting, taken)
        taken.add(port)
        ports.append(port)
    state = StackState(ports[0], ports[1], ports[2], 0, 0, str(artifacts.kafka_lib), str(artifacts.registry_jar))
    state.issuer_port, state.oauth_port = ports[3], ports[4]
    state.identity_header, state.trigger_secret = secrets.token_hex(16), secrets.token_urlsafe(24)

    data_dir = home() / "kafka-data"
    _reset_dir(data_dir)
    for name in ("kafka", "registry", "issuer"):
        _log(name).unlink(missing_ok=True)
    config = _server_properties(state, data_dir)
    fmt = subprocess.run(
        _java(
            f"{state.kafka_lib}/*",
            ["kafka.tools.StorageTool", "format", "--standalone", "-t", _cluster_id(), "-c", str(config)],
            "256m",
        ),
        capture_output=True,
        text=True,
    )
    if fmt.returncode != 0:
        raise StackError(f"formatting KRaft storage failed: {fmt.stderr.strip() or fmt.stdout.strip()}")

    # The issuer first (the broker fetches its JWKS), then both JVMs before waiting on either: their start-ups overlap.
    state.issuer_pid = _start_issuer(state)
    _wait("token issuer", state.issuer_pid, lambda: issuer_ready(state.issuer_url), "issuer")
    state.kafka_pid = _start_broker(state)
    state.registry_pid = _start_registry(state)
    _save_state(state)
    try:
        _wait("Kafka broker", state.kafka_pid, lambda: broker_ready(state.bootstrap_servers), "kafka")
        _wait("Schema Registry", state.registry_pid, lambda: registry_ready(state.registry_url), "registry")
    except StackError:
        down()
        raise
    return state, True


def _reset_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def stop_broker(state: StackState) -> None:
    """Stop only the broker, keeping its data: half of a restart, and a way to inject a broker outage."""
    _stop_pid(state.kafka_pid)


def start_broker(state: StackState) -> StackState:
    """Start the broker again on the same ports and data, and wait until it serves metadata."""
    state.kafka_pid = _start_broker(state)
    _save_state(state)
    _wait("Kafka broker", state.kafka_pid, lambda: broker_ready(state.bootstrap_servers), "kafka")
    return state


def restart_broker(state: StackState) -> StackState:
    """Stop the broker and start it again on the same data."""
    stop_broker(state)
    return start_broker(state)


def stop_registry(state: StackState) -> None:
    """Stop only the registry (its in-memory store is lost): for registry-outage tests."""
    _stop_pid(state.registry_pid)


S = TypeVar("S")


@contextmanager
def scoped(start: Callable[[], tuple[S, bool]], stop: Callable[[], object], keep: bool = False) -> Iterator[S]:
    """A stack (this one, or the 3-node cluster) for the length of a `with` block: started if needed, stopped
    after only if this block started it."""
    state, started = start()
    try:
        yield state
    finally:
        if started and not keep:
            stop()


def running(keep: bool = False) -> AbstractContextManager[StackState]:
    """The stack for the length of a `with` block (see `scoped`)."""
    return scoped(up, down, keep)


def down() -> bool:
    """Stop whatever `up` started; True if there was anything to stop."""
    state = load_state()
    if state is None:
        return False
    _stop_pid(state.registry_pid)
    if state.secure_registry_pid:
        _stop_pid(state.secure_registry_pid)
    _stop_pid(state.kafka_pid)
    if state.issuer_pid:
        _stop_pid(state.issuer_pid)
    _state_file().unlink(missing_ok=True)
    return True
