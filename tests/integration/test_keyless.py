"""Keyless (issue 36), against parts that verify signatures: the broker's OAUTHBEARER listener (Kafka's
BrokerJwtValidator against the local issuer's JWKS: signature, audience, issuer, expiry; sessions re-authenticated
at token expiry) and an Apicurio registry that requires the issuer's tokens (Quarkus OIDC).

- The main job with `--auth entra`: our clients on the managed identity's tokens (azure-identity against the
  issuer's App Service endpoint), the emulated trigger on OIDC client credentials (librdkafka's `oidc` method),
  tokens living 10 s so every client refreshes several times mid-stream: settled exactly once.
- A token with another audience, an expired one, one signed by another key (refused by the registry, and with the
  registry on its key, by the broker), and an identity endpoint that does not answer: each batch fails for retry
  with an error naming the cause, nothing is written, and the same batch settles exactly once when the cause is gone.
- No token, secret or identity header in any captured log line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

import function_app
from devstack import keyless
from devstack import stack as devstack
from localrun.experiments.generator import GeneratorConfig, trades, value_encoder
from localrun.experiments.kafka import read_to_end, settlement_of
from settlement.core.errors import RetryBatch
from tests.integration.pipeline import as_events
from tests.kafka_helpers import create_topics, release_clients, unique_name

# The tests set the shared issuer's faults and token lifetime: one process runs them all, one after another.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("keyless")]

ROOT = Path(__file__).resolve().parents[2]
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.")  # the start of any JWT


@pytest.fixture(scope="module")
def state(stack) -> Iterator[devstack.StackState]:
    if not stack.owned:
        pytest.skip("needs the local stack's token issuer and OAUTHBEARER listener")
    recorded = devstack.load_state()
    assert recorded is not None
    recorded = devstack.secure_registry(recorded)
    keyless.set_fault(recorded, None)
    yield recorded
    keyless.set_fault(recorded, None)
    keyless.set_lifetime(recorded, devstack.TOKEN_LIFETIME_S)


@pytest.fixture(autouse=True)
def _no_client_outlives_its_test() -> Iterator[None]:
    """The in-process tests build clients signed in by `oauth_cb`, which librdkafka calls on its own background
    thread; one left in a reference cycle (a failed batch's traceback holds its frames) would be destroyed by
    whichever collection finds it, and one on that client's own thread aborts the whole test process (it did,
    in a later test of the same process). Released and collected here, after each test, on the test's thread."""
    yield
    release_clients()


def assert_no_credentials(text: str, state: devstack.StackState) -> None:
    assert not JWT.search(text), "a token in the logs"
    assert state.trigger_secret not in text, "the trigger's client secret in the logs"
    assert state.identity_header not in text, "the identity header in the logs"


def test_the_main_job_settles_exactly_once_signed_in_with_tokens_refreshed_mid_stream(state, stack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SCHEMA_REGISTRY", "IDENTITY_"))}
    # Long enough that librdkafka's refresh (80 % of a token's life) comes well before its re-authentication
    # (90 % of the session's) on a busy machine: a session re-authenticated on a token a second from expiry is
    # re-authenticated again within the second, which the broker refuses (KIP-368) and the connection drops.
    lifetime = 10
    argv = ["--auth", "entra", "--token-lifetime", str(lifetime), "--trades", "300000", "--partitions", "3"]
    # The job's own timeout, below this test's: a run that stops making progress reports what it saw.
    argv += ["--evaluation-interval", "1", "--lag-threshold", "2000", "--no-chart", "--timeout", "300"]
    proc = subprocess.run(
        [sys.executable, "-m", "localrun.experiments.main", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    check = re.search(
        r"check: inputs (\d+) = settlements (\d+) \+ dead letters (\d+) - duplicates (\d+); lost (\d+)", out
    )
    assert check, out[-3000:]
    inputs, settled, dead, duplicates, lost = (int(x) for x in check.groups())
    assert (inputs, settled, dead, duplicates, lost) == (300_004, 300_000, 4, 0, 0)
    hosted = re.search(r"processed \d+ records in ([\d.]+)s", out)
    tokens = re.search(r"the managed identity issued (\d+) .* the trigger's OIDC client got (\d+)", out)
    assert hosted and tokens, out[-3000:]
    # One process at least hosted the whole run; librdkafka refreshes at 80 % of a token's life, so that process
    # alone took a new token this many times while records flowed (each count also holds every process's first).
    refreshes = int(float(hosted.group(1)) // lifetime)
    assert refreshes >= 2, f"the run ({hosted.group(1)} s) was too short to refresh {lifetime} s tokens"
    assert int(tokens.group(1)) >= 1 + refreshes and int(tokens.group(2)) >= 1 + refreshes, tokens.group(0)
    mid_run = re.search(r"to (\d+) app processes \((\d+) refreshes mid-run\)", out)
    assert mid_run and int(mid_run.group(2)) >= refreshes, out[-1500:]
    assert "0 token requests refused" in out
    assert_no_credentials(out, state)


@dataclass
class Batch:
    events: list
    source: str
    settlements: str
    dlq: str
    env: dict[str, str]


def _batch(state: devstack.StackState, target: str, count: int = 12) -> Batch:
    """`count` trades on a fresh topic, registered in the registry this target's settings read, and the app settings
    of a keyless run on it, with only the target on tokens so that its refusal is the one seen: `registry` (Kafka on
    the plain listener) or `broker` (the registry on its key)."""
    source, settlements, dlq = unique_name("kl-trades"), unique_name("kl-settled"), unique_name("kl-dlq")
    create_topics(state.bootstrap_servers, [source, settlements, dlq])
    env = keyless.app_settings(state)
    registry_conf = keyless.harness_registry_conf(state)
    if target == "registry":  # the ledger takes a partition before it decodes: keep Kafka on the plain listener
        env.pop("KAFKA_LOGICAL_CLUSTER")
        env.update(
            KAFKA_AUTH="key", KAFKA_BOOTSTRAP_SERVERS=state.bootstrap_servers, KAFKA_SECURITY_PROTOCOL="PLAINTEXT"
        )
    if target == "broker":
        for name in ("SCHEMA_REGISTRY_AUTH", "SCHEMA_REGISTRY_LOGICAL_CLUSTER"):
            env.pop(name)
        env["SCHEMA_REGISTRY_URL"], registry_conf = state.registry_url, {}
    encode = value_encoder(env["SCHEMA_REGISTRY_URL"], source, "ksqldb", registry_conf)
    out = Producer({"bootstrap.servers": state.bootstrap_servers})
    for key, trade in trades(count, GeneratorConfig(seed=36)):
        out.produce(source, key=key, value=encode(trade))
    out.flush(10)
    consumer = Consumer(
        {
            "bootstrap.servers": state.bootstrap_servers,
            "group.id": unique_name("kl-read"),
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([source])
    messages = []
    while len(messages) < count:
        messages += [m for m in consumer.consume(count, timeout=5) if m.error() is None]
    consumer.close()
    env.update(
        {
            "USER_TRADES_TOPIC": source,
            "SETTLEMENTS_TOPIC": settlements,
            "DEAD_LETTER_TOPIC": dlq,
            "KAFKA_CONSUMER_GROUP": unique_name("kl-settle"),
            "SETTLEMENT_DELIVERY_TIMEOUT_SECONDS": "8",
            "SETTLEMENT_SEC_SAMPLE_RATE": "0",
        }
    )
    env = {k: v for k, v in env.items() if v != ""}
    return Batch(as_events(messages), source, settlements, dlq, env)


CASES = {
    # the app's scope names another resource: a token for another audience, signed and unexpired
    "audience": ({"ENTRA_TOKEN_SCOPE": "api://another-audience/.default"}, None, "audience 'api://another-audience'"),
    "expired": ({}, "expired", "it expired at"),
    "signed by another key": ({}, "rogue-key", "its signing key is not among the issuer's published keys"),
}


def _settle(batch: Batch, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str]) -> object:
    for name in [n for n in os.environ if n.startswith(("KAFKA_", "SCHEMA_REGISTRY", "ENTRA_", "CONFLUENT_"))]:
        monkeypatch.delenv(name)
    for name, value in {**batch.env, **overrides}.items():
        monkeypatch.setenv(name, value)
    function_app.root.reset(producer_timeout_s=1)
    from settlement.runtime import settle_kafka_events

    return settle_kafka_events(function_app.root, batch.events)


def _visible(state: devstack.StackState, batch: Batch) -> list[tuple[int, int]]:
    settled = [settlement_of(m) for m in read_to_end(state.bootstrap_servers, batch.settlements)]
    return sorted((s.source_partition, s.source_offset) for s in settled)


@pytest.mark.parametrize("target", ["registry", "broker"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_token_is_a_retried_batch_naming_the_cause_and_nothing_is_lost(
    state, target: str, case: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    batch = _batch(state, target)
    overrides, fault, cause = CASES[case]
    keyless.set_lifetime(state, 60)
    keyless.set_fault(state, fault)
    try:
        with pytest.raises(RetryBatch) as failed:
            _settle(batch, monkeypatch, overrides)
    finally:
        keyless.set_fault(state, None)
    message = str(failed.value)
    refuser = "the Schema Registry" if target == "registry" else "the broker"
    assert f"{refuser} refused the managed identity's token" in message, message
    assert cause in message, message
    assert _visible(state, batch) == []  # nothing written
    # The cause gone, the host's retry of the same batch settles every record, once.
    _settle(batch, monkeypatch, {})
    function_app.root.reset()
    assert _visible(state, batch) == sorted((e.partition, e.offset) for e in batch.events)
    assert_no_credentials(capfd.readouterr().err + message, state)


def test_an_identity_endpoint_that_does_not_answer_is_a_retried_batch_naming_it(
    state, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    batch = _batch(state, "registry")
    closed = devstack._choose_port("DEVSTACK_NO_SUCH_PORT", set())  # free, so nothing listens there
    with pytest.raises(RetryBatch) as failed:
        _settle(batch, monkeypatch, {"IDENTITY_ENDPOINT": f"http://127.0.0.1:{closed}/msi/token"})
    message = str(failed.value)
    assert "the managed identity gave no token for api://trade-settlement-local/.default" in message, message
    assert "Connection refused" in message, message
    assert _visible(state, batch) == []
    _settle(batch, monkeypatch, {})
    function_app.root.reset()
    assert _visible(state, batch) == sorted((e.partition, e.offset) for e in batch.events)
    assert_no_credentials(capfd.readouterr().err + message, state)


def _trigger_consumer(state: devstack.StackState, secret: str, topic: str) -> Consumer:
    """A consumer signed in as the emulated extension signs the trigger in: OIDC client credentials."""
    from localrun.platform.binding import listener_auth

    binding = {
        "authenticationMode": "OAUTHBEARER",
        "protocol": "SASLPLAINTEXT",
        "oAuthBearerMethod": "OIDC",
        "oAuthBearerClientId": "%ID%",
        "oAuthBearerClientSecret": "%SECRET%",
        "oAuthBearerTokenEndpointUrl": "%URL%",
        "oAuthBearerScope": "%SCOPE%",
    }
    settings = {"ID": devstack.TRIGGER_CLIENT_ID, "SECRET": secret, "URL": f"{state.issuer_url}/token"}
    settings["SCOPE"] = keyless.SCOPE
    conf = {"bootstrap.servers": state.oauth_bootstrap_servers, "group.id": unique_name("kl-rotate")}
    conf.update({"auto.offset.reset": "earliest", "log_level": 0, **listener_auth(binding, settings)})
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    return consumer


def _reads(consumer: Consumer, count: int, timeout_s: float = 20.0) -> int:
    import time

    got, until = 0, time.monotonic() + timeout_s
    while got < count and time.monotonic() < until:
        got += sum(1 for m in consumer.consume(count, timeout=1) if m.error() is None)
    consumer.close()
    return got


def test_the_triggers_secret_rotates_with_both_valid_during_the_overlap(state) -> None:
    topic = unique_name("kl-rotate")
    create_topics(state.bootstrap_servers, [topic])
    out = Producer({"bootstrap.servers": state.bootstrap_servers})
    for i in range(5):
        out.produce(topic, value=b"%d" % i)
    out.flush(10)
    old, new = state.trigger_secret, "rotated-" + unique_name("s")
    keyless.add_client_secret(state, new)  # the overlap: both valid
    try:
        assert _reads(_trigger_consumer(state, old, topic), 5) == 5
        assert _reads(_trigger_consumer(state, new, topic), 5) == 5
        keyless.revoke_client_secret(state, old)  # the old one removed once every host runs on the new
        import urllib.error

        with pytest.raises(urllib.error.HTTPError, match="401"):
            keyless.client_token(state, old)
        assert _reads(_trigger_consumer(state, old, topic), 5, timeout_s=8) == 0
        assert _reads(_trigger_consumer(state, new, topic), 5) == 5
    finally:
        keyless.add_client_secret(state, old)  # the stack's own secret, for the tests after this one
        keyless.revoke_client_secret(state, new)
