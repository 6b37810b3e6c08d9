"""scripts/smoke_check.py against the real local broker and registry: with the function settling `user_trades`
it passes; with nothing settling it fails at its timeout, saying how many trades are missing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer

from scripts import smoke_check
from tests.integration.pipeline import Pipeline, as_events
from tests.kafka_helpers import unique_name

pytestmark = pytest.mark.integration


@pytest.fixture
def running_function(pipeline: Pipeline) -> Iterator[None]:
    """The real function (function_app.settle_user_trades, the exactly-once guarantee) fed the records of
    `user_trades` in batches as the host hands them, in a thread, until the test ends."""
    import function_app

    stop = threading.Event()
    failures: list[BaseException] = []

    def feed() -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": pipeline.bootstrap,
                "group.id": unique_name("smoke-host"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([pipeline.source])
        try:
            while not stop.is_set():
                batch = [m for m in consumer.consume(64, timeout=0.2) if not m.error()]
                if batch:
                    function_app.settle_user_trades(as_events(batch))
                    consumer.commit(asynchronous=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            failures.append(exc)
        finally:
            consumer.close()

    thread = threading.Thread(target=feed, name="smoke-function", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(30)
    assert not failures, failures


def _args(p: Pipeline, timeout_s: float, count: int = 5) -> list[str]:
    return [
        "--bootstrap-servers",
        p.bootstrap,
        "--schema-registry-url",
        p.registry_url,
        "--source-topic",
        p.source,
        "--settlements-topic",
        p.settlements,
        "--dead-letter-topic",
        p.dlq,
        "--count",
        str(count),
        "--timeout",
        str(timeout_s),
    ]


def test_the_smoke_check_passes_when_the_function_settles(
    pipeline: Pipeline, running_function: None, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("SETTLEMENT_DELIVERY_GUARANTEE", "exactly-once")
    started = time.monotonic()
    assert smoke_check.main(_args(pipeline, 60, count=7), env={}) == 0
    out = capsys.readouterr().out
    assert "smoke_check: OK" in out and "7 trades via user_trades" in out
    # every smoke trade is a known user with a small amount: Completed, unless the SEC sample picks it (rate 0 here)
    assert "settled: 7 Completed" in out and "duplicates seen: 0" in out
    assert time.monotonic() - started < 60


def test_the_smoke_check_fails_at_its_timeout_when_nothing_settles(pipeline: Pipeline, capsys) -> None:
    started = time.monotonic()
    assert smoke_check.main(_args(pipeline, 3, count=4), env={}) == 1
    took = time.monotonic() - started
    out = capsys.readouterr().out
    assert "FAILED" in out and "4 of 4 trades have no settlement" in out
    assert 3 <= took < 20


def test_a_missing_topic_is_a_clear_error(pipeline: Pipeline, capsys) -> None:
    args = _args(pipeline, 3)
    args[args.index("--settlements-topic") + 1] = unique_name("absent")
    assert smoke_check.main(args, env={}) == 2
    assert "does not exist (run scripts/ksql_apply.py first" in capsys.readouterr().err


def test_cloud_credentials_come_from_the_environment_only() -> None:
    conf = smoke_check.kafka_conf("b:9092", {"KAFKA_API_KEY": "k", "KAFKA_API_SECRET": "s"})
    assert (conf["security.protocol"], conf["sasl.username"], conf["sasl.password"]) == ("SASL_SSL", "k", "s")
    assert smoke_check.kafka_conf("b:9092", {}) == {"bootstrap.servers": "b:9092"}
    registry = smoke_check.registry_conf(
        "https://sr", {"SCHEMA_REGISTRY_API_KEY": "a", "SCHEMA_REGISTRY_API_SECRET": "b"}
    )
    assert registry["basic.auth.user.info"] == "a:b"
