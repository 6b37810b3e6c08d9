"""One process at a time for the set-up steps that write into the shared download cache.

The test suite runs in several processes (pytest-xdist), and on a clean clone the first tests of each process all
need what is not downloaded yet: two Maven runs filling one folder (or Maven's own repository) at once, or one
process starting a registry from a jar another is still unpacking, failed a clean-clone run. A step holds its own
lock, and every Maven run also holds `MAVEN`; a step may take `MAVEN` inside its own lock, never the other way round.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAVEN = "maven"


@contextmanager
def held(name: str, cache: Path) -> Iterator[None]:
    """An exclusive lock named `name` across the processes of this machine, kept in `cache` (advisory: `flock`)."""
    folder = cache / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
