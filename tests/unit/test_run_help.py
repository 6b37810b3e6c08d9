"""`scripts/run.sh --help` prints its usage before bootstrap (nothing installed, nothing created), and that usage
lists exactly the options of `python -m localrun`, which run.sh passes them to."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from localrun.experiments.main import main as localrun_main

ROOT = Path(__file__).resolve().parents[2]
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _run_help(flag: str) -> subprocess.CompletedProcess[str]:
    # A Python that does not exist: were bootstrap reached, it would fail with exit 2 saying so.
    env = {**os.environ, "PYTHON": "/nonexistent/python3"}
    return subprocess.run(
        ["bash", "scripts/run.sh", flag], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_needs_no_bootstrap(flag: str) -> None:
    done = _run_help(flag)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: scripts/run.sh [options]")


def test_the_usage_lists_the_options_of_localrun(capsys) -> None:
    with pytest.raises(SystemExit):
        localrun_main(["--help"])
    options = set(OPTION.findall(capsys.readouterr().out.split("options:")[1]))
    usage = _run_help("--help").stdout.split("options:")[1]
    columns = [line.strip().split("  ")[0] for line in usage.splitlines() if line.strip().startswith("-")]
    listed = {option for column in columns for option in OPTION.findall(column)}
    assert listed == options, listed ^ options
