"""A port handed out for a service is not handed out again, to any process, while the service starts: another
stack or cluster starting at the same time drew the same free port and its registry could not bind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import stack

ROOT = Path(__file__).resolve().parents[2]


def test_a_claimed_port_is_not_drawn_again_by_another_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "PORT_CLAIMS", tmp_path)
    first = stack.free_port(set())
    # Another process, whose random draws start with the port just claimed: it gets the next one.
    script = (
        "import random, sys\n"
        "from pathlib import Path\n"
        "from devstack import stack\n"
        f"stack.PORT_CLAIMS = Path({str(tmp_path)!r})\n"
        f"draws = iter([{first}, {first}, {first} + 1, {first} + 2])\n"
        "random.randrange = lambda *a: next(draws)\n"
        "print(stack.free_port(set()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    second = int(out.stdout)
    assert second != first and second in (first + 1, first + 2)
    claimed = json.loads((tmp_path / "claimed.json").read_text())
    assert {int(p) for p in claimed} == {first, second}


def test_a_claim_lapses_once_its_service_has_had_time_to_bind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "PORT_CLAIMS", tmp_path)
    port = stack.free_port(set())
    stale = {str(port): 0.0}  # claimed long ago
    (tmp_path / "claimed.json").write_text(json.dumps(stale))
    draws = iter([port])
    monkeypatch.setattr(stack.random, "randrange", lambda *a: next(draws))
    assert stack.free_port(set()) == port
