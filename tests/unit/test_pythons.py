"""The Python versions in their one place (scripts/pythons.sh) agree with everything that names them: the
versions each deploy plan accepts, the project's declared minimum, and the tools' target version."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _shell_value(path: Path, name: str) -> str:
    match = re.search(rf'^(?:readonly )?{name}="?([^"\n]+)"?$', path.read_text(), re.M)
    assert match, f"{path.name} sets {name}"
    return match.group(1)


DEFAULT = _shell_value(ROOT / "scripts" / "pythons.sh", "DEFAULT_PYTHON")
TESTED = _shell_value(ROOT / "scripts" / "pythons.sh", "TESTED_PYTHONS").split()


def _plan(name: str) -> list[str]:
    return [entry.split(":")[0] for entry in _shell_value(ROOT / "scripts" / "deploy.sh", name).split()]


def test_the_default_is_tested_and_every_tested_version_deploys_on_both_plans() -> None:
    assert DEFAULT in TESTED
    for plan in ("FLEX_PYTHONS", "PREMIUM_PYTHONS"):
        assert set(TESTED) <= set(_plan(plan)), plan


def test_the_lowest_tested_version_is_the_declared_minimum_and_the_tools_target() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lowest = min(TESTED, key=lambda v: tuple(map(int, v.split("."))))
    assert project["project"]["requires-python"] == f">={lowest}"
    assert project["tool"]["mypy"]["python_version"] == lowest
    assert project["tool"]["ruff"]["target-version"] == "py" + lowest.replace(".", "")
    for plan in ("FLEX_PYTHONS", "PREMIUM_PYTHONS"):
        assert min(_plan(plan), key=lambda v: tuple(map(int, v.split(".")))) == lowest, plan


def test_an_untested_version_gets_no_env() -> None:
    done = subprocess.run(["bash", "scripts/venv_for.sh", "3.10"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "not one the project is tested on" in done.stderr
