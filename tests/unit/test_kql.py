"""Every KQL query we ship (the alert rules as deployed, the workbook's tiles, the documentation's ```kusto blocks)
parses and analyses clean in Microsoft's Kusto.Language against the Application Insights tables; and the check
fails on what Log Analytics would refuse (negative controls). scripts/kql_check.py; the parser runs under node."""

from __future__ import annotations

import json

import pytest

from scripts import kql_check
from scripts.kql_check import Query


@pytest.fixture(scope="module")
def shipped() -> list[Query]:
    return kql_check.shipped_queries()


def test_every_query_we_ship_is_found(shipped: list[Query]) -> None:
    names = [q.name for q in shipped]
    template = json.loads(kql_check.TEMPLATE.read_text())
    rules = [r for r in template["resources"] if r["type"] == "Microsoft.Insights/scheduledQueryRules"]
    assert sum(n.startswith("template.json ") for n in names) == len(rules) == 4
    assert sum(n.startswith("workbook.json ") for n in names) == kql_check.WORKBOOK.read_text().count('"query":')
    assert any(n.startswith("docs/metrics.md:") for n in names)
    # the alert rules as Azure deploys them: ARM's format() evaluated, no placeholder left
    for q in shipped:
        assert "{0}" not in q.text and "parameters(" not in q.text, q.name


def test_every_query_we_ship_parses_and_analyses_clean(shipped: list[Query]) -> None:
    found = kql_check.check(shipped)
    assert set(found) == {q.name for q in shipped}
    bad = {name: [str(d) for d in diagnostics] for name, diagnostics in found.items() if diagnostics}
    assert bad == {}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ('customMetrics | where name == "settlement.lag.seconds" | summarize max(valeu)', "KS142"),  # a column
        ('customMetric | where name == "settlement.lag.seconds"', "KS204"),  # a table
        # the workbook tile that shipped broken: `kind` is a keyword where a column is named
        (
            "customMetrics | summarize n = sum(value) by bin(timestamp, 5m), kind = tostring(customDimensions.kind)",
            "KS228",
        ),
        ("customMetrics | where (", "KS005"),  # syntax
        ('customMetrics | where value == "x" and timestamp > 3', "KS"),  # types: a real compared with a string
    ],
)
def test_the_check_fails_on_what_log_analytics_refuses(query: str, code: str) -> None:
    [diagnostics] = kql_check.check([Query("control", query)]).values()
    assert any(d.code.startswith(code) for d in diagnostics), diagnostics


def test_the_tables_are_application_insights_own() -> None:
    """The columns the queries read, as Microsoft documents them for the classic tables (source in the file)."""
    tables = kql_check.tables()
    assert {"customMetrics", "traces", "exceptions", "requests", "dependencies", "customEvents"} <= set(tables)
    metrics = tables["customMetrics"]
    assert {k: metrics[k] for k in ("timestamp", "name", "value", "valueCount", "valueMax", "customDimensions")} == {
        "timestamp": "datetime",
        "name": "string",
        "value": "real",
        "valueCount": "int",
        "valueMax": "real",
        "customDimensions": "dynamic",
    }
    assert "learn.microsoft.com" in json.loads(kql_check.TABLES.read_text())["source"]["page"]


def test_arm_format_is_evaluated_with_the_parameters_defaults() -> None:
    params = {"t": {"type": "int", "defaultValue": 60}, "n": {"type": "int", "minValue": 0}}
    assert kql_check.arm_value("[format('a ''b'' > {0} and {1}', parameters('t'), parameters('n'))]", params) == (
        "a 'b' > 60 and 0"
    )
    assert kql_check.arm_value("plain | text", params) == "plain | text"
    with pytest.raises(ValueError, match="not an ARM expression"):
        kql_check.arm_value("[concat('a', 'b')]", params)
