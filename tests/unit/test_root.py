"""The composition root (settlement/runtime/root.py) without a broker: services built from the settings they are
given (two side by side in one process, each with its own clients), the repair built over the exactly-once delivery's
own ledger, and one process's `Root` built once, reset, and built again after a bad setting is fixed. Nothing here
needs an answer: librdkafka clients are built without reaching a broker, and the settlement schema's prefetch is
best effort (a batch would resolve it again)."""

from __future__ import annotations

import pytest

from settlement.core import ConfigError
from settlement.runtime import Root, Services, load_settings


def env(**overrides: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # nothing listens on port 9: no client here needs an answer
        "SCHEMA_REGISTRY_URL": "http://127.0.0.1:9/apis/ccompat/v7",
        "SETTLEMENT_DELIVERY_GUARANTEE": "at-least-once",
        "KAFKA_CONSUMER_GROUP": "root-test",
        **overrides,
    }


def test_services_are_built_from_the_settings_they_are_given_and_live_side_by_side() -> None:
    small = Services.build(load_settings(env(SETTLEMENT_HTTP_MAX_RECORDS="7")))
    large = Services.build(load_settings(env(SETTLEMENT_HTTP_MAX_RECORDS="900")))
    try:
        assert (small.http_limits.max_records, large.http_limits.max_records) == (7, 900)
        assert small.producer.current() is not None and small.producer.current() is not large.producer.current()
        assert small.exactly_once is None and small.repair() is None  # at-least-once: no ledger, nothing to repair
    finally:
        small.close(producer_timeout_s=0)
        large.close(producer_timeout_s=0)
    assert small.producer.current() is None  # closed: flushed and dropped


def test_the_repair_is_built_once_over_the_exactly_once_deliverys_own_ledger() -> None:
    services = Services.build(load_settings(env(SETTLEMENT_DELIVERY_GUARANTEE="exactly-once", USER_TRADES_TOPIC="ut")))
    try:
        assert services.exactly_once is not None and services.current_repair() is None  # built on first use
        repair = services.repair()
        assert repair is not None and services.repair() is repair and services.current_repair() is repair
        assert repair.topic == "ut"
        assert repair._ledger is services.exactly_once._ledger  # a constructor argument, not a lookup
    finally:
        services.close(producer_timeout_s=0)


def test_a_root_builds_once_resets_and_builds_anew() -> None:
    root = Root(env())
    assert root.current() is None  # nothing built at construction (the host indexes the app first)
    first = root.services()
    assert root.services() is first and root.current() is first
    root.reset(producer_timeout_s=0)
    assert root.current() is None
    try:
        assert root.services() is not first
    finally:
        root.reset(producer_timeout_s=0)


def test_a_bad_setting_fails_the_build_naming_it_and_the_next_call_builds_again() -> None:
    settings = env(SETTLEMENT_SEC_SAMPLE_RATE="lots")
    root = Root(settings)
    with pytest.raises(ConfigError, match="SETTLEMENT_SEC_SAMPLE_RATE"):
        root.services()
    assert root.current() is None
    settings["SETTLEMENT_SEC_SAMPLE_RATE"] = "0.1"  # the app setting fixed: the next invocation builds
    try:
        assert root.services().settings.rules.sec_sample_rate == 0.1
    finally:
        root.reset(producer_timeout_s=0)
