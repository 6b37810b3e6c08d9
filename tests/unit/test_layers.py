"""The parts of the layer contract import-linter cannot state (pyproject.toml `[tool.importlinter]` holds the rest):
function_app.py is a module, not a package, so it cannot be one of its roots."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("settlement", "localrun", "devstack", "streaming", "scripts", "bench")


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports by absolute name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names if node.module.split(".")[0] in OURS)
    return found


def outside_runtime(modules: set[str]) -> list[str]:
    """The modules of ours, other than settlement's runtime layer, among `modules`."""
    return sorted(
        m for m in modules if m.split(".")[0] in OURS and m != "settlement" and not m.startswith("settlement.runtime")
    )


def test_the_function_app_imports_only_the_runtime_layer() -> None:
    assert outside_runtime(imports_of(ROOT / "function_app.py")) == []


def test_the_check_fails_for_an_import_below_the_runtime(tmp_path: Path) -> None:
    app = tmp_path / "function_app.py"
    app.write_text("from settlement.runtime.service import warm_start\nfrom settlement.delivery import batch\n")
    assert outside_runtime(imports_of(app)) == ["settlement.delivery", "settlement.delivery.batch"]
