"""Every KQL query the project ships, parsed and analysed by Microsoft's own Kusto.Language.

A workbook tile once shipped that Log Analytics refused (`KS228 The name 'kind' needs to be bracketed`): our own
tests named the instruments right and never parsed the query. So every query is handed to Kusto.Language (npm
`@kusto/language-service-next`, version pinned in scripts/monitoring/kql/package-lock.json), the parser and
analyser behind Log Analytics, with a database of the Application Insights tables the queries target and their
columns (scripts/monitoring/kql/app_insights_tables.json, from Microsoft's documentation, source named there):

- the alert rules of scripts/monitoring/template.json, their ARM `format(...)` expressions evaluated with the
  parameters' default values (or their `minValue`), as Azure would deploy them;
- every `query` of scripts/monitoring/workbook.json;
- every ```kusto block of the documentation (README.md, docs/*.md).

Any diagnostic, syntax, semantic or the analyser's, fails. `install` sets the parser up (scripts/bootstrap.sh
runs it): `npm ci` of the checked-in package files into .cache/, once per lock file.

    .venv/bin/python -m scripts.kql_check            # check; exit 1 on any diagnostic
    .venv/bin/python -m scripts.kql_check install    # set the parser up (idempotent)
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KQL_DIR = ROOT / "scripts" / "monitoring" / "kql"
TEMPLATE = ROOT / "scripts" / "monitoring" / "template.json"
WORKBOOK = ROOT / "scripts" / "monitoring" / "workbook.json"
TABLES = KQL_DIR / "app_insights_tables.json"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_PACKAGE_FILES = ("package.json", "package-lock.json")
_KUSTO_BLOCK = re.compile(r"^```kusto\n(.*?)^```", re.S | re.M)
_FORMAT = re.compile(r"^\[format\('((?:[^']|'')*)'((?:\s*,\s*parameters\('[A-Za-z0-9_]+'\))*)\)\]$", re.S)
_PARAMETER = re.compile(r"parameters\('([A-Za-z0-9_]+)'\)")


@dataclass(frozen=True)
class Query:
    name: str  # where it is shipped: file and rule, tile or block
    text: str


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: str
    message: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.code} {self.severity}: {self.message} (at: {self.excerpt!r})"


def install_dir() -> Path:
    """Where the pinned parser is installed: one folder per lock file, so a new pin installs beside the old."""
    digest = hashlib.sha256(b"".join((KQL_DIR / f).read_bytes() for f in _PACKAGE_FILES)).hexdigest()[:16]
    return ROOT / ".cache" / f"kql-{digest}"


def install() -> Path:
    """`npm ci` of the checked-in package files into .cache/ unless done already; returns node_modules."""
    target = install_dir()
    modules = target / "node_modules"
    if (modules / "@kusto" / "language-service-next" / "package.json").exists():
        return modules
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"kql_check: {tool} not found: install Node.js 18+ and npm (Debian: apt-get install nodejs npm)"
            )
    target.mkdir(parents=True, exist_ok=True)
    for name in _PACKAGE_FILES:
        shutil.copyfile(KQL_DIR / name, target / name)
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], cwd=target, check=True
    )
    return modules


def arm_value(expression: str, parameters: dict[str, Any]) -> str:
    """A template string as ARM evaluates it: a plain string, or `[format('…{0}…', parameters('x'), …)]` with each
    parameter's default (or its minValue). Anything else is refused: the check must see the deployed text."""
    if not expression.startswith("["):
        return expression
    match = _FORMAT.match(expression)
    if match is None:
        raise ValueError(f"not an ARM expression this check evaluates: {expression[:80]}")
    text = match.group(1).replace("''", "'")
    values = []
    for name in _PARAMETER.findall(match.group(2)):
        declared = parameters[name]
        value = declared.get("defaultValue", declared.get("minValue"))
        if value is None:
            raise ValueError(f"parameter {name} has neither a defaultValue nor a minValue")
        values.append(str(value))
    return re.sub(r"\{(\d+)\}", lambda m: values[int(m.group(1))], text)


def alert_queries(template: Path = TEMPLATE) -> list[Query]:
    doc = json.loads(template.read_text())
    out = []
    for res in doc["resources"]:
        if res["type"] == "Microsoft.Insights/scheduledQueryRules":
            for criterion in res["properties"]["criteria"]["allOf"]:
                text = arm_value(criterion["query"], doc["parameters"])
                out.append(Query(f"{template.name} {res['name']}", text))
    return out


def workbook_queries(workbook: Path = WORKBOOK) -> list[Query]:
    out: list[Query] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            where = str(node.get("name", where))
            if isinstance(node.get("query"), str):
                out.append(Query(f"{workbook.name} {where}", node["query"]))
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    walk(json.loads(workbook.read_text()), "")
    return out


def doc_queries(docs: list[Path] = DOCS) -> list[Query]:
    out = []
    for path in docs:
        text = path.read_text()
        for match in _KUSTO_BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            out.append(Query(f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return out


def shipped_queries() -> list[Query]:
    return [*alert_queries(), *workbook_queries(), *doc_queries()]


def tables() -> dict[str, dict[str, str]]:
    return json.loads(TABLES.read_text())["tables"]  # type: ignore[no-any-return]


def check(queries: list[Query], schema: dict[str, dict[str, str]] | None = None) -> dict[str, list[Diagnostic]]:
    """Each query's diagnostics from Kusto.Language (empty when it parses and analyses clean)."""
    modules = install_dir() / "node_modules"
    if not modules.exists():
        raise RuntimeError(f"Kusto.Language is not installed in {modules}: run scripts/bootstrap.sh")
    payload = {"tables": schema or tables(), "queries": [{"name": q.name, "text": q.text} for q in queries]}
    proc = subprocess.run(
        ["node", str(KQL_DIR / "check.js"), str(modules)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"check.js failed: {proc.stderr[-2000:]}")
    results = json.loads(proc.stdout)["results"]
    return {
        r["name"]: [Diagnostic(d["code"], d["severity"], d["message"], d["excerpt"]) for d in r["diagnostics"]]
        for r in results
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["install"]:
        print(f"kql_check: Kusto.Language in {install()}")
        return 0
    queries = shipped_queries()
    found = check(queries)
    bad = {name: diagnostics for name, diagnostics in found.items() if diagnostics}
    for name, diagnostics in bad.items():
        for diagnostic in diagnostics:
            print(f"{name}: {diagnostic}")
    print(f"kql_check: {len(queries)} queries, {len(bad)} with diagnostics")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
