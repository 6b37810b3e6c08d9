"""`devstack local-settings` against the real broker: the topics it creates, a second run that finds them, and
the file's values pointing at the stack (and, when this session started the stack, the command itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from devstack import cli, local_settings
from tests.kafka_helpers import unique_name

pytestmark = pytest.mark.integration


def _partitions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return {t: len(meta[t].partitions) for t in topics if t in meta}


def test_creates_the_settings_topics_then_finds_them(stack, tmp_path: Path) -> None:
    example = json.loads(local_settings.EXAMPLE.read_text())
    names = {k: unique_name(v) for k, v in local_settings.TOPIC_SETTINGS.items()}
    example["Values"].update(names)
    source = tmp_path / "example.json"
    source.write_text(json.dumps(example))
    out = tmp_path / "local.settings.json"

    first = local_settings.write_local_settings(stack.bootstrap, stack.registry_url, out, source, partitions=3)
    topics = [names["USER_TRADES_TOPIC"], names["SETTLEMENTS_TOPIC"], names["DEAD_LETTER_TOPIC"]]
    assert _partitions(stack.bootstrap, topics) == dict(zip(topics, [3, 3, 1], strict=True))
    assert all(created for _, created in first.topics.values())
    values = json.loads(out.read_text())["Values"]
    assert values["KAFKA_BOOTSTRAP_SERVERS"] == stack.bootstrap and values["SCHEMA_REGISTRY_URL"] == stack.registry_url

    again = local_settings.write_local_settings(stack.bootstrap, stack.registry_url, out, source, force=True)
    assert again.topics == {t: (n, False) for t, n in zip(topics, [3, 3, 1], strict=True)}  # found, not re-created


def test_the_command_writes_for_the_running_stack(stack, tmp_path: Path, capsys) -> None:
    if not stack.owned:
        pytest.skip("the stack was given by the environment: there is no devstack state to read")
    out = tmp_path / "local.settings.json"
    assert cli.main(["local-settings", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"KAFKA_BOOTSTRAP_SERVERS={stack.bootstrap}" in printed and "Azurite" in printed
    assert json.loads(out.read_text())["Values"]["KAFKA_BOOTSTRAP_SERVERS"] == stack.bootstrap
    assert cli.main(["local-settings", "--output", str(out)]) == 2  # exists: not replaced without --force
    assert "pass --force" in capsys.readouterr().err
