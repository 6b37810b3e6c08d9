"""ksql/datagen/ and ksql/teardown/: the Datagen connectors use only the fully managed connector's documented keys
and feed the topics ksql/01-sources.sql reads; the tear-down drops every object the ksql/ statements create,
each after whatever reads it."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.ksql_apply import CONNECTOR, load_statements, statement_files

ROOT = Path(__file__).resolve().parents[2]
# Documented configuration of Confluent Cloud's fully managed Datagen Source connector (the keys used here).
DATAGEN_KEYS = {
    "connector.class",
    "kafka.auth.mode",
    "kafka.api.key",
    "kafka.api.secret",
    "kafka.topic",
    "output.data.format",
    "quickstart",
    "max.interval",
    "tasks.max",
}
CREATED = re.compile(r"CREATE\s+(?:SINK\s+|SOURCE\s+)?(STREAM|TABLE|CONNECTOR)\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)


def _properties(text: str) -> dict[str, str]:
    return dict(re.findall(r"'([^']+)'\s*=\s*'([^']*)'", text))


def test_datagen_connectors_write_the_source_topics_with_documented_keys() -> None:
    statements = load_statements([ROOT / "ksql" / "datagen" / "datagen-sources.sql"])
    assert len(statements) == 2 and all(CONNECTOR.match(s.text) for s in statements)
    configs = [_properties(s.text) for s in statements]
    for config in configs:
        assert set(config) <= DATAGEN_KEYS, set(config) - DATAGEN_KEYS
        assert config["connector.class"] == "DatagenSource" and config["output.data.format"] == "JSON"
        assert config["kafka.api.secret"] == "${KAFKA_API_SECRET}"  # substituted at apply time, never committed
    assert {(c["kafka.topic"], c["quickstart"]) for c in configs} == {
        ("stocktrade", "STOCK_TRADES"),
        ("users", "USERS"),
    }
    sources = (ROOT / "ksql" / "01-sources.sql").read_text()
    assert set(re.findall(r"KAFKA_TOPIC = '([^']+)'", sources)) == {"stocktrade", "users"}


def test_datagen_is_not_applied_by_default() -> None:
    assert all(p.parent == ROOT / "ksql" for p in statement_files("cloud"))


def test_teardown_drops_everything_created_readers_first() -> None:
    created = []
    for path in [*statement_files("cloud"), ROOT / "ksql" / "datagen" / "datagen-sources.sql"]:
        for s in load_statements([path]):
            m = CREATED.search(s.text)
            if m:
                created.append(m.group(2).upper())
    drops = [
        re.search(r"DROP\s+(?:STREAM|TABLE|CONNECTOR)\s+IF\s+EXISTS\s+(\w+)", s.text, re.I).group(1).upper()  # type: ignore[union-attr]
        for s in load_statements([ROOT / "ksql" / "teardown" / "teardown.sql"])
    ]
    assert sorted(drops) == sorted(created)
    order = {name: i for i, name in enumerate(drops)}
    for reader, source in (
        ("EXPOSURE_BY_SYMBOL_HOURLY", "TRADE_SETTLEMENTS"),
        ("SETTLEMENTS_BY_SYMBOL_DISPOSITION", "TRADE_SETTLEMENTS"),
        ("USER_TRADES", "STOCKTRADE"),
        ("USER_TRADES", "USERS"),
        ("USER_TRADES_AZURE_FUNCTIONS_SINK", "USER_TRADES"),
    ):
        assert order[reader] < order[source]
