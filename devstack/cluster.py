"""A three-node KRaft cluster on this machine, every client connection through toxiproxy.

`python -m devstack up --brokers 3`. Why this shape: Confluent Cloud runs replication factor 3 with
min.insync.replicas 2, so a leader change, a controller change and a transaction-coordinator move only happen
on a cluster, and network faults need a proxy that all client traffic crosses.

- Three combined nodes (`process.roles=broker,controller`, static quorum of the three), heap 512 MiB each:
  three separate controllers would add three JVMs to a 2-core machine. Killing the active controller
  therefore also kills a broker; the two survivors keep both the quorum and the ISR (min 2).
- Each node has three listeners: CLIENT (advertised as its toxiproxy port, so every client request,
  bootstrap or not, crosses the proxy), INTERNAL (replication, not proxied; also the "direct" address the
  fault harness uses to look and count while the client path is faulted) and CONTROLLER.
- Replication factor 3 and min.insync.replicas 2 by default for user topics and for every internal topic:
  `__consumer_offsets`, `__transaction_state` (min ISR 2), the share-group state topic.
- A registry of its own (Apicurio, in memory) behind a proxy too.

State lives in `.stack/cluster/` (its own state.json), so the one-broker stack is untouched and both can run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from contextlib import AbstractContextManager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from devstack import locks, stack, toxiproxy
from devstack.errors import StackError
from devstack.fetch import CACHE, _pom_property, fetch, require_tools

HOST = stack.HOST
NODES = 3
NODE_HEAP = "512m"
REGISTRY_HEAP = "512m"
REGISTRY_PROXY = "registry"


def proxy_name(node_id: int) -> str:
    """The toxiproxy proxy in front of one node's client listener."""
    return f"kafka-{node_id}"


@dataclass
class Node:
    node_id: int
    client_port: int  # the broker's own client listener (toxiproxy's upstream)
    internal_port: int  # replication and the harness's direct view, not proxied
    controller_port: int
    proxy_port: int  # what the node advertises to clients
    pid: int = 0


@dataclass
class ClusterState:
    """What `up --brokers 3` started."""

    nodes: list[Node]
    registry_port: int
    registry_proxy_port: int
    toxiproxy_port: int
    registry_pid: int
    toxiproxy_pid: int
    kafka_lib: str
    registry_jar: str
    tools_jar: str

    @property
    def bootstrap_servers(self) -> str:
        """The function's (and any client's) bootstrap: the proxied addresses."""
        return ",".join(f"{HOST}:{n.proxy_port}" for n in self.nodes)

    @property
    def direct_bootstrap(self) -> str:
        """The INTERNAL listeners: for the harness to look and count while client traffic is faulted."""
        return ",".join(f"{HOST}:{n.internal_port}" for n in self.nodes)

    @property
    def registry_url(self) -> str:
        """The function's registry: through its proxy."""
        return f"http://{HOST}:{self.registry_proxy_port}/apis/ccompat/v7"

    @property
    def direct_registry_url(self) -> str:
        return f"http://{HOST}:{self.registry_port}/apis/ccompat/v7"

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def proxy(self) -> toxiproxy.Toxiproxy:
        return toxiproxy.Toxiproxy(HOST, self.toxiproxy_port)


def home() -> Path:
    """The cluster's state folder, beside the one-broker stack's."""
    return stack.home() / "cluster"


def _log(name: str) -> Path:
    return home() / "logs" / f"{name}.log"


def load_state() -> ClusterState | None:
    """The recorded cluster, or None when none was started."""
    path = home() / "state.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    raw["nodes"] = [Node(**n) for n in raw["nodes"]]
    return ClusterState(**raw)


def _save(state: ClusterState) -> None:
    home().mkdir(parents=True, exist_ok=True)
    (home() / "state.json").write_text(json.dumps(asdict(state), indent=2))


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    for _ in range(count):
        ports.append(stack.free_port(set(ports)))
    return ports


def fetch_tools(cache: Path = CACHE) -> Path:
    """The `kafka-tools` jar (MetadataQuorumCommand, TransactionsCommand): the active controller and a
    transaction's coordinator are asked of the cluster with them, since confluent-kafka's AdminClient has no
    DescribeQuorum or DescribeTransactions and KRaft brokers report a random broker as "controller". Kept
    beside, not inside, the broker's lib folder so the one-broker stack's cached download stays as it is."""
    version = _pom_property("kafka.version")
    jar = cache / f"kafka-tools-{version}" / f"kafka-tools-{version}.jar"
    with locks.held("kafka-tools", cache):
        if not jar.exists():
            _fetch_tools(jar, version, cache)
    return jar


def _fetch_tools(jar: Path, version: str, cache: Path) -> None:
    require_tools()
    log = cache / "logs" / "fetch-kafka-tools.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    jar.parent.mkdir(parents=True, exist_ok=True)
    # Outside the project (no -f devstack/pom.xml): that pom configures the plugin for the registry archive.
    with log.open("w") as out, locks.held(locks.MAVEN, cache):
        subprocess.run(
            [
                "mvn", "-B", "-q", "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
                f"-Dartifact=org.apache.kafka:kafka-tools:{version}", f"-DoutputDirectory={jar.parent}",
            ],
            stdout=out, stderr=subprocess.STDOUT, cwd=jar.parent,
        )  # fmt: skip
    if not jar.exists():
        raise StackError(f"kafka-tools {version} was not fetched; see {cache / 'logs' / 'fetch-kafka-tools.log'}")


def _properties(state: ClusterState, node: Node) -> Path:
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in state.nodes)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": (
            f"CLIENT://{HOST}:{node.client_port},INTERNAL://{HOST}:{node.internal_port},"
            f"CONTROLLER://{HOST}:{node.controller_port}"
        ),
        "advertised.listeners": f"CLIENT://{HOST}:{node.proxy_port},INTERNAL://{HOST}:{node.internal_port}",
        "listener.security.protocol.map": "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(home() / f"data-{node.node_id}"),
        "num.partitions": "1",
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2",
        "unclean.leader.election.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    path = home() / f"server-{node.node_id}.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def _spawn(cmd: list[str], name: str) -> int:
    log = _log(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return proc.pid


def _start_node(state: ClusterState, node: Node) -> int:
    config = home() / f"server-{node.node_id}.properties"
    return _spawn(stack._java(f"{state.kafka_lib}/*", ["kafka.Kafka", str(config)], NODE_HEAP), f"kafka-{node.node_id}")


def _wait(what: str, pid: int, ready: Any, log_name: str, timeout_s: float | None = None) -> None:
    stack.wait_started(what, pid, ready, _log(log_name), timeout_s)


def is_running(state: ClusterState) -> bool:
    """Every process alive, every node serving, the registry and the proxy answering."""
    return (
        all(stack._alive(n.pid) for n in state.nodes)
        and stack._alive(state.registry_pid)
        and stack._alive(state.toxiproxy_pid)
        and state.proxy().ready()
        and all(stack.broker_ready(f"{HOST}:{n.internal_port}") for n in state.nodes)
        and stack.registry_ready(state.registry_url)
    )


def up() -> tuple[ClusterState, bool]:
    """Start the cluster, or return the running one; the flag says whether this call started it."""
    existing = load_state()
    if existing is not None:
        if is_running(existing):
            return existing, False
        down()
    require_tools()
    artifacts = fetch()
    tools_jar = fetch_tools()
    proxy_bin = toxiproxy.ensure_built()
    ports = _free_ports(4 * NODES + 3)
    nodes = [Node(i + 1, *ports[4 * i : 4 * i + 4]) for i in range(NODES)]
    registry_port, registry_proxy_port, toxiproxy_port = ports[4 * NODES :]
    state = ClusterState(
        nodes,
        registry_port,
        registry_proxy_port,
        toxiproxy_port,
        0,
        0,
        str(artifacts.kafka_lib),
        str(artifacts.registry_jar),
        str(tools_jar),
    )
    for old in home().glob("data-*"):
        stack._reset_dir(old)
    (home() / "logs").mkdir(parents=True, exist_ok=True)
    for log in (home() / "logs").glob("*.log"):
        log.unlink()

    state.toxiproxy_pid = _spawn([str(proxy_bin), "-host", HOST, "-port", str(toxiproxy_port)], "toxiproxy")
    _save(state)
    try:
        cluster_id = stack._cluster_id()
        formats = []
        for node in nodes:
            stack._reset_dir(home() / f"data-{node.node_id}")
            config = _properties(state, node)
            cmd = stack._java(
                f"{state.kafka_lib}/*",
                ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
                "256m",
            )
            formats.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for proc in formats:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise StackError(f"formatting KRaft storage failed: {out.strip()}")
        _wait("toxiproxy", state.toxiproxy_pid, state.proxy().ready, "toxiproxy")
        api = state.proxy()
        for node in nodes:
            api.create_proxy(proxy_name(node.node_id), f"{HOST}:{node.proxy_port}", f"{HOST}:{node.client_port}")
        api.create_proxy(REGISTRY_PROXY, f"{HOST}:{registry_proxy_port}", f"{HOST}:{registry_port}")

        for node in nodes:
            node.pid = _start_node(state, node)
        state.registry_pid = _spawn(
            [
                "java",
                f"-Xmx{REGISTRY_HEAP}",
                f"-Dquarkus.http.port={registry_port}",
                f"-Dquarkus.http.host={HOST}",
                "-Dquarkus.http.access-log.enabled=false",
                "-jar",
                state.registry_jar,
            ],
            "registry",
        )
        _save(state)
        for node in nodes:
            _wait(
                f"Kafka node {node.node_id}",
                node.pid,
                lambda n=node: stack.broker_ready(f"{HOST}:{n.internal_port}"),
                f"kafka-{node.node_id}",
            )
        _wait("Schema Registry", state.registry_pid, lambda: stack.registry_ready(state.registry_url), "registry")
        wait_brokers(state, NODES)
        _warm_internal_topics(state)
    except BaseException:
        down()
        raise
    return state, True


def _warm_internal_topics(state: ClusterState) -> None:
    """Create `__transaction_state` and `__consumer_offsets` now (a transactional id and a group asking for
    their coordinator makes the broker create them), while all three nodes are up, so no fault row waits for
    their creation or creates them with a node missing."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    quiet = {"logger": stack._PROBE_LOG, "log_level": 0}
    producer = Producer({"bootstrap.servers": state.direct_bootstrap, "transactional.id": "devstack-warm", **quiet})
    producer.init_transactions(60)
    consumer = Consumer({"bootstrap.servers": state.direct_bootstrap, "group.id": "devstack-warm", **quiet})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                consumer.committed([TopicPartition("devstack-warm", 0)], timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()
    wait_isr_full(state)


def wait_brokers(state: ClusterState, count: int, timeout_s: float = 60.0) -> None:
    """Wait until `count` brokers are registered and unfenced (seen in metadata)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": state.direct_bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if len(admin.list_topics(timeout=5).brokers) >= count:
                return
        except Exception:  # noqa: BLE001 - not ready yet
            time.sleep(0.25)
            continue
        time.sleep(0.25)
    raise StackError(f"fewer than {count} brokers registered within {timeout_s:.0f}s; see {home() / 'logs'}")


def under_replicated(state: ClusterState) -> list[str]:
    """Partitions (`topic[p]`) whose ISR is not all three replicas or which have no leader."""
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": state.direct_bootstrap}).list_topics(timeout=10)
    return [
        f"{t.topic}[{p.id}]"
        for t in meta.topics.values()
        for p in t.partitions.values()
        if p.leader < 0 or len(p.isrs) < len(p.replicas)
    ]


def wait_isr_full(state: ClusterState, timeout_s: float = 120.0) -> float:
    """Wait until every partition of every topic has its full ISR again; returns the seconds it took."""
    started = time.monotonic()
    short: list[str] = []
    while time.monotonic() - started < timeout_s:
        try:
            short = under_replicated(state)
            if not short:
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - metadata momentarily unavailable
            short = ["(metadata unavailable)"]
        time.sleep(0.25)
    raise StackError(f"ISR not full after {timeout_s:.0f}s: {short[:10]}")


def partition_leader(state: ClusterState, topic: str, partition: int) -> int:
    """The node leading a partition, from metadata (AdminClient.list_topics)."""
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": state.direct_bootstrap}).list_topics(topic, timeout=10)
    leader = int(meta.topics[topic].partitions[partition].leader)
    if leader < 0:
        raise StackError(f"{topic}[{partition}] has no leader")
    return leader


def _tool(state: ClusterState, main: str, *args: str) -> str:
    cmd = stack._java(
        f"{state.kafka_lib}/*:{state.tools_jar}", [main, "--bootstrap-server", state.direct_bootstrap, *args], "128m"
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise StackError(f"{main.rsplit('.', 1)[-1]} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout


def active_controller(state: ClusterState) -> int:
    """The quorum leader, from DescribeQuorum (MetadataQuorumCommand): KRaft brokers answer metadata
    requests with a random broker as "controller", so AdminClient.describe_cluster cannot tell."""
    out = _tool(state, "org.apache.kafka.tools.MetadataQuorumCommand", "describe", "--status")
    match = re.search(r"LeaderId:\s+(\d+)", out)
    if not match:
        raise StackError(f"no LeaderId in: {out.strip()}")
    return int(match.group(1))


def transaction_coordinator(state: ClusterState, transactional_id: str) -> int:
    """The broker coordinating a transactional id, from FindCoordinator + DescribeTransactions
    (TransactionsCommand describe): confluent-kafka's AdminClient has neither call."""
    out = _tool(state, "org.apache.kafka.tools.TransactionsCommand", "describe", "--transactional-id", transactional_id)
    lines = [line.split() for line in out.strip().splitlines() if line.strip()]
    header = lines[0]
    return int(lines[1][header.index("CoordinatorId")])


def kill_node(state: ClusterState, node_id: int) -> None:
    """SIGKILL one node (no shutdown: no leadership handed over, no controlled shutdown)."""
    node = state.node(node_id)
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while stack._alive(node.pid):
        time.sleep(0.02)


def start_node(state: ClusterState, node_id: int) -> None:
    """Start a stopped node again on its data and ports, and wait until it serves."""
    node = state.node(node_id)
    node.pid = _start_node(state, node)
    _save(state)
    _wait(
        f"Kafka node {node_id}",
        node.pid,
        lambda: stack.broker_ready(f"{HOST}:{node.internal_port}"),
        f"kafka-{node_id}",
    )


def memory_mib(state: ClusterState) -> dict[str, float]:
    """Resident memory of each process (MiB), from /proc: the figure the README's budget states."""
    pids = {f"kafka-{n.node_id}": n.pid for n in state.nodes}
    pids |= {"registry": state.registry_pid, "toxiproxy": state.toxiproxy_pid}
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        out[name] = int(match.group(1)) / 1024 if match else 0.0
    return out


def running(keep: bool = False) -> AbstractContextManager[ClusterState]:
    """The cluster for the length of a `with` block (see `stack.scoped`)."""
    return stack.scoped(up, down, keep)


def down() -> bool:
    """Stop whatever `up --brokers 3` started; True if there was anything to stop."""
    state = load_state()
    if state is None:
        return False
    stack._stop_pid(state.registry_pid)
    for node in state.nodes:
        if node.pid:
            with suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGCONT)  # a node a fault left stopped must be able to exit
    for node in state.nodes:
        if node.pid and stack._alive(node.pid):
            with suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
    for node in state.nodes:
        if node.pid:
            stack._stop_pid(node.pid)
    stack._stop_pid(state.toxiproxy_pid)
    (home() / "state.json").unlink(missing_ok=True)
    return True
