"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.pipeline import Pipeline, _pipeline
from tests.integration.workers import settings, workers  # noqa: F401 - fixtures


@pytest.fixture
def pipeline(stack, monkeypatch) -> Iterator[Pipeline]:
    yield from _pipeline(stack, monkeypatch)


@pytest.fixture
def owned_pipeline(owned_stack, monkeypatch) -> Iterator[Pipeline]:
    """A pipeline on the stack of the tests that restart it (tests/conftest.py `owned_stack`)."""
    yield from _pipeline(owned_stack, monkeypatch)
