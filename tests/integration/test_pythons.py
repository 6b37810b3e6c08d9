"""The other supported Pythons: the whole suite runs on the deploy default (.venv, scripts/pythons.sh); on each
other tested version, the unit tests and one integration test against this session's real stack run in an env of
that version (scripts/venv_for.sh, cached in .cache/venvs/). A second and third run of the whole suite would
double its time; these two sets catch what differs between versions (syntax, the standard library, the wheels of
each pin, the `azure-functions` converters on each version) in about half a minute each, both at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# The one integration test run on every version: the Kafka-triggered function, a real batch off the real broker,
# decoded through the real registry, settled and read back, each settlement's values checked.
INTEGRATION = "tests/integration/test_settle_function.py::test_a_batch_settles_into_exact_settlements"


def _versions() -> tuple[str, list[str]]:
    text = (ROOT / "scripts" / "pythons.sh").read_text()
    default = re.search(r"^DEFAULT_PYTHON=(\S+)", text, re.M)
    tested = re.search(r'^TESTED_PYTHONS="([^"]+)"', text, re.M)
    assert default and tested, "scripts/pythons.sh names DEFAULT_PYTHON and TESTED_PYTHONS"
    return default.group(1), tested.group(1).split()


DEFAULT, TESTED = _versions()
RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_the_suite_runs_on_the_deploy_default() -> None:
    if RUNNING != DEFAULT and os.environ.get("CI"):
        pytest.fail(f"the suite runs on Python {RUNNING}, not the deploy default {DEFAULT} (scripts/bootstrap.sh)")
    assert RUNNING in TESTED


OTHERS = [v for v in TESTED if v != RUNNING]


def _run_on(version: str, stack) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """("failed" | "skipped" | "passed", what to say): build or reuse the version's env, then run the tests."""
    made = subprocess.run(
        ["bash", "scripts/venv_for.sh", version], cwd=ROOT, capture_output=True, text=True, check=False, timeout=900
    )
    if made.returncode != 0:
        return ("failed" if os.environ.get("CI") else "skipped"), f"no env for Python {version}: {made.stderr[-2000:]}"
    python = made.stdout.strip().splitlines()[-1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap, "SCHEMA_REGISTRY_URL": stack.registry_url}
    ran = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit", INTEGRATION],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    summary = ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ran.stderr[-2000:]
    if ran.returncode != 0 or not re.search(r"\d+ passed", summary) or "skipped" in summary:
        return "failed", f"Python {version}: {summary}\n{ran.stdout[-4000:]}"
    return "passed", f"Python {version}: {summary}"


@pytest.fixture(scope="module")
def runs(stack):  # type: ignore[no-untyped-def]
    """Every other version's run, started together: on two cores they take little more than the longest one."""
    with ThreadPoolExecutor(max_workers=max(1, len(OTHERS))) as pool:
        futures = {v: pool.submit(_run_on, v, stack) for v in OTHERS}
        yield futures


@pytest.mark.parametrize("version", OTHERS)
def test_unit_tests_and_one_integration_test_pass_on(version: str, runs) -> None:  # type: ignore[no-untyped-def]
    outcome, message = runs[version].result()
    if outcome == "skipped":
        pytest.skip(message)
    assert outcome == "passed", message
    print(message)
