// Parse and analyse KQL queries with Microsoft's Kusto.Language (npm @kusto/language-service-next, the parser and
// analyser behind Log Analytics and Azure Data Explorer), against a database of the tables the queries target.
//
// Usage: node check.js <node_modules dir>  < {"tables": {name: {column: type}}, "queries": [{"name", "text"}]}
// Prints {"results": [{"name", "diagnostics": [{"code", "severity", "message", "start", "length", "excerpt"}]}]}:
// the syntax and semantic diagnostics (KustoCode.GetDiagnostics) and the analyser's (KustoCodeService's
// GetAnalyzerDiagnostics) of each query. scripts/kql_check.py drives it; it decides nothing itself.
"use strict";

const fs = require("fs");
const path = require("path");

const modules = process.argv[2];
if (!modules) {
  process.stderr.write("usage: node check.js <node_modules dir> < input.json\n");
  process.exit(2);
}
const pkg = path.join(modules, "@kusto", "language-service-next");
global.Bridge = require(path.join(pkg, "bridge.js"));
require(path.join(pkg, "Kusto.Language.Bridge.js"));
const K = global.Kusto.Language;
const S = K.Symbols;

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const tables = Object.entries(input.tables).map(([name, columns]) => {
  const schema = "(" + Object.entries(columns).map(([c, t]) => `['${c}']:${t}`).join(", ") + ")";
  return new S.TableSymbol.$ctor7(name, schema, null);
});
const globals = K.GlobalState.Default.WithDatabase(new S.DatabaseSymbol.ctor("app", tables));

function list(diagnostics, text) {
  const out = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    out.push({
      code: d.Code,
      severity: d.Severity,
      message: d.Message,
      start: d.Start,
      length: d.Length,
      excerpt: text.substr(Math.max(0, d.Start - 20), d.Length + 40),
    });
  }
  return out;
}

const results = input.queries.map(({ name, text }) => {
  const code = K.KustoCode.ParseAndAnalyze(text, globals);
  const service = new K.Editor.KustoCodeService.ctor(code);
  return {
    name,
    diagnostics: [...list(code.GetDiagnostics(), text), ...list(service.GetAnalyzerDiagnostics(true), text)],
  };
});
process.stdout.write(JSON.stringify({ version: require(path.join(pkg, "package.json")).version, results }) + "\n");
