"""The parts of the layer contract import-linter cannot state (pyproject.toml `[tool.importlinter]` holds the rest):
function_app.py is a module, not a package, so it cannot be one of its roots; and import-linter sees modules, not
names, so "code outside settlement imports only the names a layer's surface states" is checked here. Tests may import
any module: they test the rooms from inside."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("settlement", "localrun", "devstack", "streaming", "scripts", "bench")
OUTSIDE = ("localrun", "devstack", "streaming", "scripts", "bench")
LAYERS = ("settlement.runtime", "settlement.delivery", "settlement.serde", "settlement.core", "settlement.schemas")
INSIDE = tuple(f"{layer}." for layer in LAYERS)


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


def past_surfaces(path: Path) -> list[str]:
    """What `path` imports from settlement that no surface states: a module inside a layer, or a name its layer's
    `__all__` does not list (`from settlement.core import X`), as `line: what`."""
    wrong: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            wrong += [f"{node.lineno}: {a.name}" for a in node.names if a.name.startswith(INSIDE)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in LAYERS:
                stated = set(importlib.import_module(node.module).__all__)
                wrong += [f"{node.lineno}: {node.module}.{a.name}" for a in node.names if a.name not in stated]
            elif node.module.startswith(INSIDE):
                wrong.append(f"{node.lineno}: {node.module}")
            elif node.module == "settlement.telemetry":
                stated = set(importlib.import_module(node.module).__all__)
                wrong += [f"{node.lineno}: {node.module}.{a.name}" for a in node.names if a.name not in stated]
    return wrong


def test_the_function_app_imports_only_the_runtime_layer() -> None:
    assert outside_runtime(imports_of(ROOT / "function_app.py")) == []


def test_the_check_fails_for_an_import_below_the_runtime(tmp_path: Path) -> None:
    app = tmp_path / "function_app.py"
    app.write_text("from settlement.runtime import Root\nfrom settlement.delivery import batch\n")
    assert outside_runtime(imports_of(app)) == ["settlement.delivery", "settlement.delivery.batch"]


def test_code_outside_settlement_imports_only_what_the_surfaces_state() -> None:
    files = [ROOT / "function_app.py", *(p for top in OUTSIDE for p in sorted((ROOT / top).rglob("*.py")))]
    wrong = {str(p.relative_to(ROOT)): w for p in files if (w := past_surfaces(p))}
    assert wrong == {}


def test_every_name_a_surface_states_is_there() -> None:
    for layer in (*LAYERS, "settlement.telemetry"):
        module = importlib.import_module(layer)
        assert module.__all__, layer
        assert [n for n in module.__all__ if not hasattr(module, n)] == [], layer


def test_the_surface_check_fails_for_a_module_inside_a_layer_and_for_a_name_not_stated(tmp_path: Path) -> None:
    tool = tmp_path / "tool.py"
    tool.write_text(
        "from settlement.core import InputRecord, admission\n"
        "from settlement.core.deadletter import REASON\n"
        "import settlement.serde.framing\n"
        "from settlement.runtime import Root\n"
    )
    assert past_surfaces(tool) == [
        "1: settlement.core.admission",
        "2: settlement.core.deadletter",
        "3: settlement.serde.framing",
    ]
