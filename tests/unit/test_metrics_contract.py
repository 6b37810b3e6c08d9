"""The metric table (docs/metrics.md) is a contract: every instrument the app records is a row there, with the
same kind, unit and attributes, and every row is recorded; the alert rules and the workbook that deploy.sh
deploys name only rows of it. Read with OpenTelemetry's in-memory reader in a fresh process (a process takes
one meter provider; the integration tests install their own), no network: the registry is `mock://`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "scripts" / "monitoring" / "template.json"
WORKBOOK = ROOT / "scripts" / "monitoring" / "workbook.json"
INSTRUMENT = re.compile(r"settlement\.[a-z_]+(?:\.[a-z_]+)*")

# Real batches through SettlementProcessor (decode, rules, encode, deliver): one with poison records, one that
# fails at delivery and is then run again, and one lag measurement as the repair makes it.
_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

from localrun.experiments import ksql_schema
from settlement import telemetry
from settlement.core.errors import DeliveryError
from settlement.schemas.user_trade_pb2 import UserTrade
from tests.unit.test_batch_plan import FakeTracker, processor, rec


class FailsOnce(FakeTracker):
    failed = False

    def wait(self, deadline):
        if not FailsOnce.failed:
            FailsOnce.failed = True
            raise DeliveryError("2 records not acknowledged")
        return super().wait(deadline)


proc, schema_id = processor(FakeTracker())
good = ksql_schema.encode(schema_id, UserTrade(regionid="R", quantity=3, symbol="ZVV", price=50))
proc.process([rec(0, b"User_1", good), rec(1, b"User_2", b"not protobuf"), rec(2, None, good)])
flaky, _ = processor(FailsOnce())
batch = [rec(10, b"User_3", good), rec(11, b"User_4", good)]
try:
    flaky.process(batch)
except DeliveryError:
    pass
flaky.process(batch)
telemetry.record_lag("user_trades", 3, 42, 75.5, 7)

out = {}
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            kind = type(m.data).__name__
            if kind == "Sum":
                kind = "counter" if m.data.is_monotonic else "updowncounter"
            points = []
            for p in m.data.data_points:
                value = getattr(p, "value", None)
                points.append({
                    "attributes": dict(p.attributes),
                    "value": value,
                    "count": getattr(p, "count", None),
                    "min": getattr(p, "min", None),
                })
            out[m.name] = {"scope": sm.scope.name, "kind": kind.lower(), "unit": m.unit, "points": points}
print(json.dumps(out))
"""


def documented() -> dict[str, dict[str, Any]]:
    """The rows of docs/metrics.md's table: instrument → kind, unit, attributes."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    start = text.index("| instrument | kind | unit | attributes | when recorded |")
    rows: dict[str, dict[str, Any]] = {}
    for line in text[start:].split("\n\n")[0].splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is in the table twice"
        rows[name] = {
            "kind": cells[1],
            "unit": cells[2].strip("`"),
            "attributes": set(re.findall(r"`([^`]+)`", cells[3])),
            "when": cells[4],
        }
    return rows


def recorded() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_every_recorded_instrument_is_a_row_of_the_table_with_its_kind_unit_and_attributes() -> None:
    rows, seen = documented(), recorded()
    assert set(seen) == set(rows), (
        f"recorded but not documented: {sorted(set(seen) - set(rows))}; "
        f"documented but not recorded: {sorted(set(rows) - set(seen))}"
    )
    for name, m in seen.items():
        row = rows[name]
        assert m["scope"] == "settlement", name
        assert (m["kind"], m["unit"]) == (row["kind"], row["unit"]), name
        keys = {k for p in m["points"] for k in p["attributes"]}
        assert keys == row["attributes"], (name, keys, row["attributes"])
        assert row["when"], f"{name}: say when it is recorded"


def test_the_recorded_values_are_what_the_batches_did() -> None:
    seen = recorded()

    def by(name: str, attribute: str) -> dict[str, float]:
        return {p["attributes"][attribute]: p["value"] for p in seen[name]["points"]}

    # batch 1: two settled (Completed, and Rejected for the record without a user), one dead letter; the failed
    # batch's two settle on its second run, and only then: a failed batch records no settlements
    assert by("settlement.settlements", "disposition") == {"Completed": 3, "Rejected": 1}
    assert by("settlement.dead_letters", "reason") == {"bad-magic-byte": 1}
    assert by("settlement.batches.failed", "error.type") == {"DeliveryError": 1}
    [retried] = seen["settlement.batches.retried"]["points"]
    assert retried["value"] == 1
    [latency] = seen["settlement.latency"]["points"]
    # one value per batch that settled records (the batch's oldest), not one per record
    assert latency["count"] == 2 and latency["min"] > 1_000_000_000  # seconds since the records' 1970 timestamps
    [size] = seen["settlement.batch.size"]["points"]
    assert size["count"] == 2  # the completed batches; the failed run is not a batch size
    lag = {tuple(sorted(p["attributes"].items())): p["value"] for p in seen["settlement.lag.records"]["points"]}
    assert lag == {(("partition", 3), ("topic", "user_trades")): 42}
    [seconds] = seen["settlement.lag.seconds"]["points"]
    assert seconds["value"] == 75.5


def alert_queries() -> dict[str, str]:
    """Each scheduled query rule's query in the ARM template, by the parameter that names the rule."""
    template = json.loads(TEMPLATE.read_text())
    out = {}
    for res in template["resources"]:
        if res["type"] == "Microsoft.Insights/scheduledQueryRules":
            [criterion] = res["properties"]["criteria"]["allOf"]
            out[res["name"]] = criterion["query"]
    return out


def workbook_queries() -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("query"), str):
                found.append(node["query"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(WORKBOOK.read_text()))
    return found


def test_the_alert_queries_name_only_instruments_of_the_table() -> None:
    rows = documented()
    queries = alert_queries()
    assert len(queries) == 4
    for rule, query in queries.items():
        names = set(INSTRUMENT.findall(query))
        assert names, f"{rule} names no instrument"
        assert names <= set(rows), (rule, names - set(rows))
        assert "customMetrics" in query, rule
    named = {n for q in queries.values() for n in INSTRUMENT.findall(q)}
    # the four alerts of the issue: lag, dead letters, failed batches, no settlement while records wait
    assert {
        "settlement.lag.seconds",
        "settlement.dead_letters",
        "settlement.batches.failed",
        "settlement.settlements",
        "settlement.lag.records",
    } <= named


def test_the_workbook_shows_every_instrument_an_alert_watches_and_names_only_rows() -> None:
    rows = documented()
    queries = workbook_queries()
    assert queries
    shown = {n for q in queries for n in INSTRUMENT.findall(q)}
    assert shown <= set(rows), shown - set(rows)
    watched = {n for q in alert_queries().values() for n in INSTRUMENT.findall(q)}
    assert watched <= shown, watched - shown


def test_the_instrument_pattern_would_catch_a_misnamed_instrument() -> None:
    # the check above is only as good as this pattern: a typo must be found, not skipped
    assert INSTRUMENT.findall('customMetrics | where name == "settlement.lag.secnds"') == ["settlement.lag.secnds"]
    assert "settlement.lag.secnds" not in documented()
