"""The suite's own scheduling (tests/conftest.py): under `--dist loadgroup` the tests of one `xdist_group` run in
one process, one after another, as the tests that restart their stack or set the shared token issuer's faults need.
pytest-xdist 3.8's own loadgroup scatters them under pytest 9 (it marks a group in the test's id, which pytest 9
keeps to itself), so this runs a small suite through our scheduler and looks at which process ran what."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GROUPED = """
import json, os, time, pytest
pytestmark = pytest.mark.xdist_group("together")
@pytest.mark.parametrize("n", range(4))
def test_grouped(n):
    time.sleep(0.2)
    with open(os.environ["RAN"], "a") as out:
        out.write(json.dumps(["grouped", os.environ.get("PYTEST_XDIST_WORKER")]) + "\\n")
"""
LOOSE = """
import json, os, time, pytest
@pytest.mark.parametrize("n", range(6))
def test_loose(n):
    time.sleep(0.2)
    with open(os.environ["RAN"], "a") as out:
        out.write(json.dumps(["loose", os.environ.get("PYTEST_XDIST_WORKER")]) + "\\n")
"""


def test_a_groups_tests_run_in_one_process_and_the_others_spread(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.conftest import pytest_collection_modifyitems, pytest_configure, pytest_xdist_make_scheduler\n"
    )
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_loose.py").write_text(LOOSE)
    ran = tmp_path / "ran.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SETTLEMENT_TEST_RUN"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "3", "--dist", "loadgroup"],
        cwd=tmp_path, env=env | {"RAN": str(ran)}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [json.loads(line) for line in ran.read_text().splitlines()]
    grouped = {worker for kind, worker in runs if kind == "grouped"}
    loose = {worker for kind, worker in runs if kind == "loose"}
    assert len(runs) == 10
    assert len(grouped) == 1, runs  # the group: one process
    assert len(loose) > 1, runs  # the rest: spread (or the check above proves nothing)
