"""The apply tool's topic step against the real broker: statements apply to an empty cluster and to one
whose topics already exist with other partition counts; sources that cannot be joined are refused."""

from __future__ import annotations

import pytest

from scripts.ksql_apply import ApplyError, ensure_topics, kafka_conf, topic_values
from tests.kafka_helpers import create_topics, unique_name

pytestmark = pytest.mark.integration


def _table() -> list[tuple[str, str]]:
    a, b, out = unique_name("stocktrade"), unique_name("users"), unique_name("user_trades")
    return [(a, "SOURCE_PARTITIONS"), (b, "SOURCE_PARTITIONS"), (out, "USER_TRADES_PARTITIONS")]


def test_missing_topics_are_created_with_the_wanted_counts(stack) -> None:
    table = _table()
    wanted = {table[0][0]: 4, table[1][0]: 4, table[2][0]: 3}
    counts = ensure_topics(kafka_conf(stack.bootstrap, {}), wanted)
    assert counts == wanted
    assert topic_values(counts, table) == {"SOURCE_PARTITIONS": "4", "USER_TRADES_PARTITIONS": "3"}
    # a second run finds them and changes nothing
    assert ensure_topics(kafka_conf(stack.bootstrap, {}), {t: 9 for t in wanted}) == wanted


def test_existing_topics_set_the_partition_variables(stack) -> None:
    table = _table()
    create_topics(stack.bootstrap, [table[0][0], table[1][0]], partitions=2)
    counts = ensure_topics(kafka_conf(stack.bootstrap, {}), {table[0][0]: 6, table[1][0]: 6, table[2][0]: 6})
    assert topic_values(counts, table) == {"SOURCE_PARTITIONS": "2", "USER_TRADES_PARTITIONS": "6"}


def test_sources_that_are_not_co_partitioned_are_refused(stack) -> None:
    table = _table()
    create_topics(stack.bootstrap, [table[0][0]], partitions=2)
    create_topics(stack.bootstrap, [table[1][0]], partitions=3)
    counts = ensure_topics(kafka_conf(stack.bootstrap, {}), {table[0][0]: 6, table[1][0]: 6, table[2][0]: 6})
    with pytest.raises(ApplyError, match="co-partitioned"):
        topic_values(counts, table)
