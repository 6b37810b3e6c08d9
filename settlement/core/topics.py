"""The topics the function writes: its settlements and its dead letters (read from settings by the runtime)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """The topics the function writes."""

    settlements: str
    dead_letter: str
