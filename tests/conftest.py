"""Session fixtures: one real broker + registry for the whole run, unique topic names per test.

Set KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL to use a stack that is already running; otherwise the
local stack (`python -m devstack up`) is started once, by whichever test process needs it first, and stopped at
the end of the run if this run started it. `scripts/test.sh` runs the tests in several processes (pytest-xdist):
they share that one stack, since every test uses topics and groups of its own. Tests that stop, freeze or restart a
broker or the registry would pull it from under the others, so they take `owned_stack` instead: a second stack
(another `DEVSTACK_HOME`), started once, and their `xdist_group` puts them all in one process, one after another.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack import locks
from tests.kafka_helpers import create_topics, release_clients, unique_name

# Importing function_app in the test process must not build a processor in the background from whatever
# the environment holds at that moment; tests/integration/test_warm_start.py covers the warm start.
os.environ.setdefault("SETTLEMENT_WARM_START", "false")

ROOT = Path(__file__).resolve().parents[1]
# One id for the whole run, set by the controlling process and inherited by the test processes, so that the one
# that started the shared stack can be told at the end, whichever process it was.
RUN_ID = "SETTLEMENT_TEST_RUN"
# The xdist group of the tests that stop or restart their stack's processes (they run in one process).
OWNED = "owned-stack"
_NAMED_RUN = pytest.StashKey[bool]()


@dataclass
class Stack:
    bootstrap: str
    registry_url: str
    owned: bool  # True when this test run controls the broker process (restart tests need that)
    home: Path | None = None  # its DEVSTACK_HOME when it is not the default one


def _groups_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"settlement-tests-{os.environ[RUN_ID]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In each test process: which collected test belongs to which `xdist_group`, for the controlling process's
    scheduler (pytest_xdist_make_scheduler below). pytest-xdist 3.8 marks a group by appending it to the test's id,
    which pytest 9 no longer lets a plugin change, so its own `--dist loadgroup` puts a group's tests anywhere."""
    worker = getattr(config, "workerinput", None)
    if worker is None or not getattr(config.option, "loadgroup", False):  # xdist's own flag in a test process
        return
    groups = {
        item.nodeid: "_".join(sorted({str(m.args[0]) for m in item.iter_markers("xdist_group")}))
        for item in items
        if item.get_closest_marker("xdist_group")
    }
    folder = _groups_dir()
    folder.mkdir(exist_ok=True)
    (folder / f"{worker['workerid']}.json").write_text(json.dumps(groups))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` as xdist documents it: the tests of one `xdist_group` in one process, one after another;
    every other test on its own (the groups read from what the test processes wrote at collection, which every
    process has finished before the controlling one schedules anything)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Groups(LoadScopeScheduling):  # type: ignore[misc]
        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:
                self._groups = {}
                for written in _groups_dir().glob("*.json"):
                    self._groups.update(json.loads(written.read_text()))
            return self._groups.get(nodeid, nodeid)

    return Groups(config, log)


def pytest_configure(config: pytest.Config) -> None:
    # The controlling process (or the only one) names the run, unless it is itself run by a test of another run
    # (tests/integration/test_pythons.py), whose stack it must leave alone.
    if not hasattr(config, "workerinput") and RUN_ID not in os.environ:
        os.environ[RUN_ID] = uuid.uuid4().hex
        config.stash[_NAMED_RUN] = True


def _started_marker() -> Path:
    from devstack import stack as devstack

    return devstack.home() / f"started-by-{os.environ[RUN_ID]}"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    given_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    given_registry = os.environ.get("SCHEMA_REGISTRY_URL")
    if given_bootstrap and given_registry:
        yield Stack(given_bootstrap, given_registry, owned=False)
        return
    from devstack import stack as devstack

    with locks.held("stack-up", devstack.home()):  # one process at a time starts (or finds) the stack
        state, started = devstack.up()
        if started:
            _started_marker().touch()  # stopped by pytest_sessionfinish once every process is done
    try:
        yield Stack(state.bootstrap_servers, state.registry_url, owned=True)
    finally:
        release_clients()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not session.config.stash.get(_NAMED_RUN, False):
        return
    shutil.rmtree(_groups_dir(), ignore_errors=True)
    from devstack import stack as devstack

    marker = _started_marker()
    if marker.exists():
        marker.unlink()
        if not os.environ.get("DEVSTACK_KEEP"):
            devstack.down()


@pytest.fixture(scope="session")
def _owned_stack_state(worker_id: str) -> Iterator[Stack]:
    from devstack import stack as devstack

    home = ROOT / ".stack" / f"owned-{worker_id}"
    previous = os.environ.get("DEVSTACK_HOME")
    os.environ["DEVSTACK_HOME"] = str(home)
    try:
        state, _ = devstack.up()
    finally:
        _restore("DEVSTACK_HOME", previous)
    try:
        yield Stack(state.bootstrap_servers, state.registry_url, owned=True, home=home)
    finally:
        release_clients()
        os.environ["DEVSTACK_HOME"] = str(home)
        try:
            devstack.down()
        finally:
            _restore("DEVSTACK_HOME", previous)


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@pytest.fixture
def owned_stack(_owned_stack_state: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """A stack of this test's own to stop, freeze or restart (`devstack` finds it through DEVSTACK_HOME for the
    length of the test). Mark the test `pytest.mark.xdist_group(OWNED)`."""
    assert _owned_stack_state.home is not None
    monkeypatch.setenv("DEVSTACK_HOME", str(_owned_stack_state.home))
    return _owned_stack_state


@pytest.fixture
def new_topic(stack: Stack) -> Callable[..., str]:
    """Create a uniquely named topic: `new_topic("user-trades", partitions=6)`."""

    def make(prefix: str = "t", partitions: int = 1) -> str:
        name = unique_name(prefix)
        create_topics(stack.bootstrap, [name], partitions)
        return name

    return make
