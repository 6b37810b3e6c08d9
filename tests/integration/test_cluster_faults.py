"""The guarantees on a real 3-node cluster (replication 3, min ISR 2), every client link through toxiproxy.

The CI subset of `python -m localrun.experiments.faults --brokers 3`: one leader failover (the leader of a user_trades
partition SIGKILLed mid-batch, then restarted) and one network fault (settlement partition 0's leader
blackholed past the producer's request timeout), both under exactly-once, plus the checks that make those
rows mean something: client traffic really crosses the proxy, and every topic, internal ones included, is
replicated three ways. The cluster is started once for this module's session and only when one of these
tests runs (it is not the `stack` fixture's one-broker stack).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from devstack import cluster
from devstack.cluster import ClusterState
from localrun.experiments import cluster_faults
from localrun.experiments.kafka import create_topics
from settlement.runtime.config import EXACTLY_ONCE
from tests.kafka_helpers import unique_name

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("three-brokers")]

LEADER_ROW = cluster_faults.SOURCE_LEADER_KILLED
BLACKHOLE_ROW = cluster_faults.LEADER_BLACKHOLED_PAST_TIMEOUT


@pytest.fixture(scope="session")
def three_brokers() -> Iterator[ClusterState]:
    """`devstack up --brokers 3` once per session, stopped at the end if this session started it."""
    state, started = cluster.up()
    try:
        yield state
    finally:
        if started and not os.environ.get("DEVSTACK_KEEP"):
            cluster.down()


def test_clients_reach_the_brokers_only_through_the_proxy(three_brokers: ClusterState) -> None:
    state = three_brokers
    meta = AdminClient({"bootstrap.servers": state.bootstrap_servers}).list_topics(timeout=10)
    advertised = sorted(b.port for b in meta.brokers.values())
    assert advertised == sorted(n.proxy_port for n in state.nodes)
    # With every broker link blackholed, a client bootstrapped on the proxied addresses gets nothing.
    names = [cluster.proxy_name(n.node_id) for n in state.nodes]
    with state.proxy().toxics(names, "timeout", {"timeout": 0}):
        with pytest.raises(KafkaException, match=r"[Tt]imed out|[Tt]ransport"):
            AdminClient({"bootstrap.servers": state.bootstrap_servers}).list_topics(timeout=3)
        # ... while the unproxied listeners still answer (the harness counts through them).
        AdminClient({"bootstrap.servers": state.direct_bootstrap}).list_topics(timeout=10)


def test_topics_and_internal_topics_are_replicated_three_ways(three_brokers: ClusterState) -> None:
    state = three_brokers
    topic = unique_name("rf3")
    create_topics(state.direct_bootstrap, {topic: 3}, replication_factor=3)  # min ISR: the broker's default
    admin = AdminClient({"bootstrap.servers": state.direct_bootstrap})
    meta = admin.list_topics(timeout=10)
    for name in (topic, "__consumer_offsets", "__transaction_state"):
        partitions = meta.topics[name].partitions.values()
        assert partitions and all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in partitions), name
    for name in (topic, "__transaction_state"):
        config = admin.describe_configs([ConfigResource("topic", name)])
        entries = next(iter(config.values())).result(timeout=10)
        assert entries["min.insync.replicas"].value == "2", name


def test_a_leader_failover_mid_batch_books_every_record_once(three_brokers: ClusterState) -> None:
    state = three_brokers
    row = cluster_faults.scenarios(state)[LEADER_ROW]
    outcome = cluster_faults.run_row(state, LEADER_ROW, EXACTLY_ONCE, **row)
    assert outcome.finished and outcome.lost == 0 and outcome.duplicates == 0, outcome
    assert outcome.settled + outcome.dead_lettered == outcome.inputs == cluster_faults.RECORDS, outcome
    assert outcome.recovery_s is not None and outcome.isr_s is not None, outcome
    assert cluster.under_replicated(state) == []


def test_a_leader_blackholed_past_the_request_timeout_books_every_record_once(three_brokers: ClusterState) -> None:
    state = three_brokers
    row = cluster_faults.scenarios(state)[BLACKHOLE_ROW]
    outcome = cluster_faults.run_row(state, BLACKHOLE_ROW, EXACTLY_ONCE, **row)
    assert outcome.finished and outcome.lost == 0 and outcome.duplicates == 0, outcome
    assert outcome.settled + outcome.dead_lettered == outcome.inputs == cluster_faults.RECORDS, outcome
    # The blackholed node stays leader and in the ISR (replication does not cross the proxy): the function's
    # requests to it time out and are retried until the blackhole lifts; nothing moves to another node.
    assert outcome.recovery_s is not None, outcome
