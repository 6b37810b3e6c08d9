"""Settings: every bad one fails naming the setting; secrets never leak into errors, reprs or logs."""

from __future__ import annotations

import logging

import pytest

from settlement.core.errors import ConfigError
from settlement.runtime.config import load_settings
from settlement.runtime.secrets import SecretNotFound

PASSWORD = "pw-Zq8vT3kLmN0pR7sX2yB5"  # a value distinctive enough to scan for
BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "broker:9092",
    "SCHEMA_REGISTRY_URL": "http://registry:8081",
    "KAFKA_CONSUMER_GROUP": "trade-settlement",
}


def env(**extra: str) -> dict[str, str]:
    return {**BASE, **extra}


def test_exactly_once_is_the_default_and_at_least_once_needs_no_group() -> None:
    s = load_settings(env())
    assert (s.guarantee, s.exactly_once, s.ledger_group, s.commit_interval_s) == (
        "exactly-once",
        True,
        "trade-settlement",
        0.3,
    )
    relaxed = load_settings(env(SETTLEMENT_DELIVERY_GUARANTEE="AT-LEAST-ONCE", KAFKA_CONSUMER_GROUP=""))
    assert (relaxed.guarantee, relaxed.exactly_once) == ("at-least-once", False)


def test_the_ledger_names_derive_from_the_group_under_one_prefix() -> None:
    from settlement.core.naming import settled_group, transactional_id

    assert settled_group("g") == "g.settled"
    assert transactional_id("g", "user_trades", 3) == "g.settled.user_trades.3"
    assert transactional_id("g", "user_trades", 3).startswith(settled_group("g") + ".")  # one prefixed ACL


def test_defaults_are_the_documented_ones() -> None:
    s = load_settings(env())
    assert s.security_protocol == "PLAINTEXT"
    assert (s.topics.settlements, s.topics.dead_letter) == ("trade-settlements", "user_trades-dlq")
    assert (s.rules.large_trade_limit, s.rules.sec_sample_rate, s.rules.sec_watchlist) == (100_000, 0.05, frozenset())
    assert (s.max_record_bytes, s.delivery_timeout_s, s.auto_register_schemas) == (65_536, 30.0, True)


@pytest.mark.parametrize(
    ("values", "setting", "problem"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": ""}, "KAFKA_BOOTSTRAP_SERVERS", "is required but not set"),
        ({"SCHEMA_REGISTRY_URL": " "}, "SCHEMA_REGISTRY_URL", "is required but not set"),
        ({"SCHEMA_REGISTRY_URL": "registry:8081"}, "SCHEMA_REGISTRY_URL", "must start with http"),
        ({"KAFKA_SASL_USERNAME": "key"}, "KAFKA_SASL_PASSWORD", "must be set together"),
        ({"KAFKA_SASL_PASSWORD": PASSWORD}, "KAFKA_SASL_USERNAME", "must be set together"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL", "'TLS' is not one of"),
        ({"SETTLEMENT_SEC_SAMPLE_RATE": "1.5"}, "SETTLEMENT_SEC_SAMPLE_RATE", "1.5 is outside 0..1"),
        ({"SETTLEMENT_LARGE_TRADE_LIMIT": "lots"}, "SETTLEMENT_LARGE_TRADE_LIMIT", "'lots' is not a number"),
        ({"SETTLEMENT_DELIVERY_TIMEOUT_SECONDS": "0"}, "SETTLEMENT_DELIVERY_TIMEOUT_SECONDS", "outside"),
        ({"SCHEMA_REGISTRY_AUTO_REGISTER": "maybe"}, "SCHEMA_REGISTRY_AUTO_REGISTER", "not true or false"),
        ({"SETTLEMENT_DELIVERY_GUARANTEE": "at-most-once"}, "SETTLEMENT_DELIVERY_GUARANTEE", "is not one of"),
        ({"KAFKA_CONSUMER_GROUP": ""}, "KAFKA_CONSUMER_GROUP", "is required with SETTLEMENT_DELIVERY_GUARANTEE"),
        ({"SETTLEMENT_COMMIT_INTERVAL_MS": "-1"}, "SETTLEMENT_COMMIT_INTERVAL_MS", "outside 0..60000"),
        ({"KAFKA_PRODUCER_CONFIG": '{"sasl.password": "' + PASSWORD}, "KAFKA_PRODUCER_CONFIG", "not valid JSON"),
        ({"SCHEMA_REGISTRY_CONFIG": '["' + PASSWORD + '"]'}, "SCHEMA_REGISTRY_CONFIG", "must be a JSON object"),
        ({"SCHEMA_REGISTRY_CONFIG": '{"url": "http://x"}'}, "SCHEMA_REGISTRY_CONFIG", "must not contain 'url'"),
        (
            {
                "KAFKA_SASL_PASSWORD": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/p/)",
                "KAFKA_SASL_USERNAME": "key",
            },
            "KAFKA_SASL_PASSWORD",
            "Key Vault reference the platform did not resolve",
        ),
    ],
)
def test_bad_settings_name_the_setting_and_hide_secrets(values: dict[str, str], setting: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env(**values))
    assert err.value.setting == setting
    assert str(err.value).startswith(f"{setting}: ")
    assert problem in str(err.value)
    assert PASSWORD not in str(err.value)


def test_secrets_do_not_show_in_repr() -> None:
    s = load_settings(
        env(
            KAFKA_SASL_USERNAME="key",
            KAFKA_SASL_PASSWORD=PASSWORD,
            SCHEMA_REGISTRY_CONFIG='{"basic.auth.user.info": "k:' + PASSWORD + '"}',
        )
    )
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)
    assert s.security_protocol == "SASL_SSL"
    conf = s.producer_conf()
    assert conf["sasl.password"] == PASSWORD and conf["sasl.mechanisms"] == "PLAIN"
    assert s.registry_conf() == {
        "url": "http://registry:8081",
        "basic.auth.user.info": f"k:{PASSWORD}",
        "timeout": 7.5,  # a quarter of the 30 s batch deadline
        "max.retries": 1,
        "retries.wait.ms": 200,
        "retries.max.wait.ms": 1000,
    }


def test_registry_requests_are_bounded_by_the_batch_deadline_whatever_the_config_says() -> None:
    s = load_settings(
        env(SETTLEMENT_DELIVERY_TIMEOUT_SECONDS="10", SCHEMA_REGISTRY_CONFIG='{"timeout": 600, "max.retries": 9}')
    )
    conf = s.registry_conf()
    assert (conf["timeout"], conf["max.retries"]) == (2.5, 1)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("SCHEMA_REGISTRY_CONFIG", '{"max.retries": "s3cr3t-value-1"}'),
        ("SCHEMA_REGISTRY_CONFIG", '{"no.such.key": "s3cr3t-value-1"}'),
        ("KAFKA_PRODUCER_CONFIG", '{"linger.ms": "s3cr3t-value-1"}'),
        ("KAFKA_PRODUCER_CONFIG", '{"no.such.property": "s3cr3t-value-1"}'),
    ],
)
def test_client_config_errors_name_the_setting_and_never_its_values(setting: str, value: str) -> None:
    from settlement.runtime import Services

    with pytest.raises(ConfigError) as err:
        Services.build(load_settings(env(**{setting: value})))
    assert err.value.setting == setting
    assert "s3cr3t-value-1" not in str(err.value)


class FakeVault:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.reads: list[str] = []

    def get(self, name: str) -> str:
        self.reads.append(name)
        if name not in self.secrets:
            raise SecretNotFound(name)
        return self.secrets[name]


def test_key_vault_supplies_absent_secret_settings() -> None:
    vault = FakeVault(
        {"kafka-sasl-username": "key", "sasl-pw": PASSWORD, "schema-registry-config": '{"basic.auth.user.info": "a:b"}'}
    )
    s = load_settings(
        env(KEY_VAULT_URL="https://v.vault.azure.net", KAFKA_SASL_PASSWORD_SECRET_NAME="sasl-pw"),
        vault_factory=lambda url: vault,
    )
    assert s.sasl_username is not None and s.sasl_username.reveal() == "key"
    assert s.sasl_password is not None and s.sasl_password.reveal() == PASSWORD
    assert s.registry_config == {"basic.auth.user.info": "a:b"}
    assert s.producer_config == {}  # kafka-producer-config is absent from the vault: optional
    assert vault.reads == ["kafka-sasl-username", "sasl-pw", "kafka-producer-config", "schema-registry-config"]


def test_an_app_setting_wins_over_the_vault() -> None:
    vault = FakeVault({"kafka-sasl-username": "from-vault", "kafka-sasl-password": "from-vault"})
    s = load_settings(
        env(KEY_VAULT_URL="https://v.vault.azure.net", KAFKA_SASL_USERNAME="from-settings"),
        vault_factory=lambda url: vault,
    )
    assert s.sasl_username is not None and s.sasl_username.reveal() == "from-settings"
    assert "kafka-sasl-username" not in vault.reads


def test_a_vault_failure_names_the_setting_not_the_error_text() -> None:
    class Broken:
        def get(self, name: str) -> str:
            raise PermissionError(f"denied while holding {PASSWORD}")

    with pytest.raises(ConfigError) as err:
        load_settings(env(KEY_VAULT_URL="https://v.vault.azure.net"), vault_factory=lambda url: Broken())
    assert str(err.value) == (
        "KAFKA_SASL_USERNAME: could not read secret 'kafka-sasl-username' from KEY_VAULT_URL (PermissionError)"
    )
    assert PASSWORD not in str(err.value)


def test_no_secret_in_logs_on_config_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for values in ({"KAFKA_SASL_PASSWORD": PASSWORD}, {"KAFKA_PRODUCER_CONFIG": PASSWORD}):
        with pytest.raises(ConfigError) as err:
            load_settings(env(**values))
        logging.getLogger("settlement").exception("configuration failed: %s", err.value)
    assert caplog.records, "the scan must have looked at something"
    assert all(PASSWORD not in (r.getMessage() + (r.exc_text or "")) for r in caplog.records)
    assert PASSWORD not in caplog.text
