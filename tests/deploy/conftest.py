"""The `azure` fixture: scripts/deploy.sh run against the stand-in az and func (harness.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.harness import make_azure


@pytest.fixture
def azure(tmp_path: Path) -> Any:
    return make_azure(tmp_path)
