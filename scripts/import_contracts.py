"""A contract type of our own for import-linter (pyproject.toml `[tool.importlinter]` registers it): a submodule of an
external package forbidden outside the modules allowed to import it.

import-linter's own `forbidden` contract cannot say "azure.functions only in settlement.runtime.triggers": grimp keeps
an external package as one node (`azure`), so `forbidden_modules = ["azure.functions"]` matches nothing, and
forbidding `azure` forbids azure.identity (the managed identity) and azure.monitor (telemetry) with it. This contract
takes the imports of the package's node that grimp found, reads each importing statement from its module's source,
and breaks on those that name the forbidden submodule (`import azure.functions`, `from azure.functions.x import y`,
`from azure import functions`), wherever the statement sits (a function's body too).
"""

from __future__ import annotations

import ast
from pathlib import Path

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain.helpers import module_expressions_to_modules


def _statement_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The full module names an import statement may name: `from a.b import c` may be a.b or a.b.c."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _module_file(module: str) -> Path | None:
    """The source file of one of our modules, below the working directory (where lint-imports runs)."""
    parts = Path(*module.split("."))
    for candidate in (parts.with_suffix(".py"), parts / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def named_imports(module: str, forbidden: str) -> list[int]:
    """The lines of `module`'s import statements that name `forbidden` or a module below it."""
    path = _module_file(module)
    if path is None:
        return []
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import | ast.ImportFrom) and not (isinstance(node, ast.ImportFrom) and node.level):
            names = _statement_names(node)
            if any(name == forbidden or name.startswith(f"{forbidden}.") for name in names):
                lines.append(node.lineno)
    return sorted(lines)


class ForbiddenExternalSubmoduleContract(Contract):
    """Options: `source_modules` (ours, as packages), `forbidden` (an external submodule such as azure.functions),
    `allowed_importers` (of the source modules, as packages; optional)."""

    type_name = "forbidden_external_submodule"

    source_modules = fields.ListField(subfield=fields.ModuleExpressionField())
    forbidden = fields.StringField()
    allowed_importers = fields.ListField(subfield=fields.ModuleExpressionField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        forbidden = str(self.forbidden)
        package = forbidden.split(".")[0]
        sources = {m.name for m in module_expressions_to_modules(graph, self.source_modules, as_packages=True)}  # type: ignore[arg-type]
        allowed = {
            m.name
            for m in module_expressions_to_modules(graph, self.allowed_importers or [], as_packages=True)  # type: ignore[arg-type]
        }
        importers = graph.find_modules_that_directly_import(package) if package in graph.modules else set()
        illegal = []
        for importer in sorted((importers & sources) - allowed):
            lines = named_imports(importer, forbidden)
            if lines:
                illegal.append({"importer": importer, "lines": lines})
        return ContractCheck(kept=not illegal, metadata={"forbidden": forbidden, "illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["illegal"]:
            lines = ", ".join(str(n) for n in item["lines"])
            output.print_error(f"{item['importer']} imports {check.metadata['forbidden']} (l.{lines})", bold=False)
            output.new_line()
