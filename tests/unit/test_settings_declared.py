"""Each setting is declared once (settlement/runtime/config.py SETTINGS); everything that lists settings follows it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from settlement.runtime.config import REQUIRED, SECRET_SETTINGS, SETTINGS, load_settings, load_trigger_settings

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"}


class Recording(dict):  # type: ignore[type-arg]
    """An environment that remembers which settings were read."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def readme_rows() -> dict[str, str]:
    """Setting name → the default cell of its row in README's settings table."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Settings") :]
    table = table[: table.index("\n\n", table.index("| setting |"))]
    rows: dict[str, str] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            rows[name] = cells[1]
    return rows


def test_the_readme_table_lists_exactly_the_declared_settings_with_their_defaults() -> None:
    rows = readme_rows()
    assert set(rows) == set(SETTINGS)
    for name, s in SETTINGS.items():
        cell = rows[name]
        if s.required:
            assert "required" in cell, name
        elif isinstance(s.default, bool):
            assert str(s.default).lower() in cell, (name, cell)
        elif isinstance(s.default, int | float | str) and s.default != "":
            shown = f"{s.default:g}" if isinstance(s.default, float) else str(s.default)
            assert shown in cell, (name, shown, cell)


def test_the_example_local_settings_hold_every_declared_setting_and_nothing_else() -> None:
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert set(values) - PLATFORM == set(SETTINGS)
    for name, s in SETTINGS.items():
        if s.secret:
            assert values[name] in ("", "{}"), f"{name}: the example must not hold a secret value"


def test_deploy_keeps_in_its_vault_the_declared_secrets_and_the_bootstrap_servers() -> None:
    script = (ROOT / "scripts" / "deploy.sh").read_text()
    keys = re.search(r"readonly SECRET_KEYS=\(([^)]*)\)", script)
    assert keys is not None
    assert set(keys.group(1).split()) == set(SECRET_SETTINGS) | {"KAFKA_BOOTSTRAP_SERVERS"}


def test_each_setting_is_read_when_its_declaration_says() -> None:
    at_indexing = Recording({})
    load_trigger_settings(at_indexing)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "b:1", "SCHEMA_REGISTRY_URL": "http://r", "KAFKA_CONSUMER_GROUP": "g"}
    at_first_invocation = Recording(env)
    load_settings(at_first_invocation)
    declared_indexing = {n for n, s in SETTINGS.items() if s.read_at == "indexing"}
    declared_both = {n for n, s in SETTINGS.items() if s.read_at == "both"}  # the authentication's, checked twice
    assert at_indexing.read == declared_indexing | declared_both
    # USER_TRADES_TOPIC is the trigger binding's (%USER_TRADES_TOPIC%, read by the host) and the warm start's
    assert at_first_invocation.read | {"USER_TRADES_TOPIC"} == set(SETTINGS) - declared_indexing
    assert {n for n, s in SETTINGS.items() if s.default is REQUIRED} == {
        "KAFKA_BOOTSTRAP_SERVERS",
        "SCHEMA_REGISTRY_URL",
    }
