"""`python -m devstack local-settings` without a broker: the JSON it writes, and what it refuses."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from devstack import cli, local_settings
from devstack.errors import StackError
from settlement.runtime.config import load_settings

BOOTSTRAP = "127.0.0.1:40123"
REGISTRY = "http://127.0.0.1:40125/apis/ccompat/v7"


def _example() -> dict:
    return json.loads(local_settings.EXAMPLE.read_text())


def test_render_keeps_every_value_of_the_example_but_the_two_addresses() -> None:
    example = _example()
    out = local_settings.render(example, BOOTSTRAP, REGISTRY)
    assert list(out) == list(example) and list(out["Values"]) == list(example["Values"])  # same keys, same order
    changed = {k for k in example["Values"] if out["Values"][k] != example["Values"][k]}
    assert changed == {"KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL"}
    assert out["Values"]["KAFKA_BOOTSTRAP_SERVERS"] == BOOTSTRAP and out["Values"]["SCHEMA_REGISTRY_URL"] == REGISTRY
    assert out["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert out["Values"]["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert example["Values"]["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"  # the input is not modified


def test_the_topics_created_are_the_ones_the_function_reads_and_writes() -> None:
    values = local_settings.render(_example(), BOOTSTRAP, REGISTRY)["Values"]
    names = local_settings.topic_names(values)
    settings = load_settings(values)  # the generated values are a valid configuration, as the function reads it
    assert names["SETTLEMENTS_TOPIC"] == settings.topics.settlements == "trade-settlements"
    assert names["DEAD_LETTER_TOPIC"] == settings.topics.dead_letter == "user_trades-dlq"
    assert (
        names["USER_TRADES_TOPIC"] == values["USER_TRADES_TOPIC"] == "user_trades"
    )  # the trigger's %USER_TRADES_TOPIC%
    # a blank setting falls back as settlement/runtime/config.py does
    blank = {k: "" for k in local_settings.TOPIC_SETTINGS}
    assert (
        local_settings.topic_names(blank)["DEAD_LETTER_TOPIC"] == load_settings({**values, **blank}).topics.dead_letter
    )


@pytest.fixture
def no_broker(monkeypatch) -> list[dict[str, int]]:
    asked: list[dict[str, int]] = []

    def fake(bootstrap: str, wanted: dict[str, int], timeout_s: float = 20.0) -> dict[str, tuple[int, bool]]:
        assert bootstrap == BOOTSTRAP
        asked.append(dict(wanted))
        return {name: (n, True) for name, n in wanted.items()}

    monkeypatch.setattr(local_settings, "ensure_topics", fake)
    return asked


def test_writes_the_file_owner_only_and_never_replaces_one_without_force(tmp_path: Path, no_broker) -> None:
    out = tmp_path / "local.settings.json"
    written = local_settings.write_local_settings(BOOTSTRAP, REGISTRY, out, partitions=4)
    assert json.loads(out.read_text()) == local_settings.render(_example(), BOOTSTRAP, REGISTRY)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert no_broker == [{"user_trades": 4, "trade-settlements": 4, "user_trades-dlq": 1}]
    assert written.topics["user_trades-dlq"] == (1, True)

    out.write_text('{"Values": {"KAFKA_SASL_PASSWORD": "mine"}}')
    with pytest.raises(StackError, match="exists; pass --force"):
        local_settings.write_local_settings(BOOTSTRAP, REGISTRY, out)
    assert out.read_text() == '{"Values": {"KAFKA_SASL_PASSWORD": "mine"}}' and len(no_broker) == 1
    local_settings.write_local_settings(BOOTSTRAP, REGISTRY, out, force=True)
    assert json.loads(out.read_text())["Values"]["KAFKA_BOOTSTRAP_SERVERS"] == BOOTSTRAP
    assert [p.name for p in tmp_path.iterdir()] == ["local.settings.json"]  # no temporary file left behind


def test_the_summary_names_addresses_and_topics_but_no_secret(tmp_path: Path, no_broker) -> None:
    example = _example()
    example["Values"]["KAFKA_SASL_PASSWORD"] = "s3cr3t-Pa55word-xyz"
    source = tmp_path / "example.json"
    source.write_text(json.dumps(example))
    written = local_settings.write_local_settings(BOOTSTRAP, REGISTRY, tmp_path / "out.json", source)
    text = "\n".join(local_settings.summary(written, BOOTSTRAP, REGISTRY))
    assert "s3cr3t" not in text
    assert f"KAFKA_BOOTSTRAP_SERVERS={BOOTSTRAP}" in text and "topic user_trades: 6 partition(s), created" in text
    assert "Azurite" in text and "func start" in text
    assert json.loads((tmp_path / "out.json").read_text())["Values"]["KAFKA_SASL_PASSWORD"] == "s3cr3t-Pa55word-xyz"


def test_the_command_without_a_running_stack_says_how_to_start_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DEVSTACK_HOME", str(tmp_path / "no-stack"))
    assert cli.main(["local-settings", "--output", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "devstack: the local stack is not running: start it with `python -m devstack up`, then run this again"
    )
    assert not (tmp_path / "x.json").exists()
