"""No module-level mutable state in `settlement/`: the process's services are built by the composition root
(settlement/runtime/root.py) and held by its one instance in function_app.py, so nothing in a module of ours may keep
state of its own. The scan (AST, every module of settlement/ but the generated schemas) fails on:

- a `global` statement (a module global rebound at run time);
- a module-level (or class-level) binding to a mutable value: a list, dict or set display or comprehension, or a
  call that is not one of the known immutable (or stateless) factories below.

Two exceptions are named, each with why it must be per process (the `NAMED` table); anything else fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Calls whose result holds no state: immutable values, loggers (the logging module's own registry), compiled
# patterns, type variables, a stateless JSON decoder, read-only mappings, sentinels, paths; `Verdict` is a
# NamedTuple; `field` declares a dataclass field (its factory runs per instance).
IMMUTABLE_CALLS = frozenset(
    {
        "frozenset",
        "tuple",
        "compile",
        "getLogger",
        "TypeVar",
        "JSONDecoder",
        "MappingProxyType",
        "object",
        "Path",
        "Verdict",
        "field",
        "_declare",  # settlement/runtime/config.py: returns a MappingProxyType
        "_ours",  # settlement/serde/columns.py: returns a MappingProxyType
    }
)
NAMED = {
    ("settlement/serde/proto_text.py", "_lock"): "protoc (grpc_tools) keeps process-global state in C: one compilation "
    "at a time in the process, whichever root asks",
    ("settlement/runtime/identity.py", "_COLLECTOR"): "the cyclic garbage collector is process-global: the token "
    "callbacks of every root's clients pause and resume the one collector, and only a count over all of them knows "
    "when none runs",
    ("settlement/telemetry.py", "_PROCESS"): "OpenTelemetry's providers and instruments are process-global (set once, "
    "deduplicated by name): the instruments, the lag readings their gauges report and the failed batches counted as "
    "retried belong to the process, not to one root",
}
MUTABLE_DISPLAYS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _mutable(value: ast.expr | None) -> bool:
    if value is None:
        return False
    if isinstance(value, MUTABLE_DISPLAYS):
        return True
    if isinstance(value, ast.Call):
        return _callee(value) not in IMMUTABLE_CALLS  # what an immutable factory is given is reachable through it only
    if isinstance(value, ast.Tuple):
        return any(_mutable(e) for e in value.elts)
    if isinstance(value, ast.BinOp):
        return _mutable(value.left) or _mutable(value.right)
    return False


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [ast.unparse(t) for t in node.targets]
    if isinstance(node, ast.AnnAssign | ast.AugAssign):
        return [ast.unparse(node.target)]
    return []


def _bindings(body: list[ast.stmt], where: str) -> list[tuple[str, ast.stmt]]:
    """Module- and class-level assignments, through `if`/`try` blocks (not into functions)."""
    out: list[tuple[str, ast.stmt]] = []
    for node in body:
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            out += [(f"{where}{t}", node) for t in _targets(node)]
        elif isinstance(node, ast.ClassDef):
            out += _bindings(node.body, f"{where}{node.name}.")
        elif isinstance(node, ast.If):
            out += _bindings(node.body, where) + _bindings(node.orelse, where)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                out += _bindings(block, where)
    return out


def module_state(path: Path, relative: str) -> list[str]:
    """What in `path` is module-level mutable state, as `file:line name (why)`, minus the named exceptions."""
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found += [f"{relative}:{node.lineno} global {name}" for name in node.names]
    for name, node in _bindings(tree.body, ""):
        value = node.value
        if name == "__all__":
            continue  # a package's surface, read by the import system (a list by convention)
        if (isinstance(node, ast.AugAssign) or _mutable(value)) and (relative, name) not in NAMED:
            found.append(f"{relative}:{node.lineno} {name} = {ast.unparse(value)[:60] if value else ''}")
    return found


def settlement_modules() -> list[Path]:
    return sorted(p for p in (ROOT / "settlement").rglob("*.py") if "schemas" not in p.parts)


def test_settlement_keeps_no_module_level_state_beyond_the_named_exceptions() -> None:
    found = [f for p in settlement_modules() for f in module_state(p, str(p.relative_to(ROOT)))]
    assert found == []


def test_each_named_exception_is_still_there() -> None:
    """An exception whose module no longer holds it is a stale name: drop it from the table."""
    for relative, name in NAMED:
        tree = ast.parse((ROOT / relative).read_text())
        assert name in [n for n, _ in _bindings(tree.body, "")], (relative, name)


def test_the_scan_finds_state_of_every_kind(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import threading\n"
        "from collections import OrderedDict\n"
        "_cache = {}\n"
        "_seen: list[int] = []\n"
        "_lock = threading.Lock()\n"
        "_order = OrderedDict()\n"
        "_client = None\n"
        "LIMITS = (1, 2)\n"
        "NAMES = frozenset({'a'})\n"
        "class Holder:\n"
        "    shared = set()\n"
        "def build():\n"
        "    global _client\n"
        "    _client = object()\n"
    )
    assert module_state(module, "m.py") == [
        "m.py:13 global _client",
        "m.py:3 _cache = {}",
        "m.py:4 _seen = []",
        "m.py:5 _lock = threading.Lock()",
        "m.py:6 _order = OrderedDict()",
        "m.py:11 Holder.shared = set()",
    ]
