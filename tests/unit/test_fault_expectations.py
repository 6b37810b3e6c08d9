"""Which fault-table outcomes count as a miss (the exit code of `python -m localrun.experiments.faults`)."""

from __future__ import annotations

import pytest

from localrun.experiments.faults import met
from localrun.experiments.scenario import Outcome


def outcome(scenario: str, guarantee: str, settings: str, settled: int, duplicates: int, lost: int) -> Outcome:
    return Outcome(scenario, guarantee, settings, 600, settled, 0, duplicates, lost, 12, 0, 0, 0, True)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (outcome("broker restart mid-run", "exactly-once", "ours", 600, 0, 0), True),
        (outcome("broker restart mid-run", "exactly-once", "ours", 650, 50, 0), False),  # a duplicate
        (outcome("broker restart mid-run", "exactly-once", "defaults", 550, 0, 50), False),  # a loss
        (outcome("an instance killed mid-batch", "at-least-once", "ours", 650, 50, 0), True),  # twice is allowed
        (outcome("function raises on 6 invocations", "at-least-once", "ours", 550, 0, 50), False),
        # the extension's commitOnFailure: true commits past the failed batch: the loss the table documents
        (outcome("function raises on 6 invocations", "at-least-once", "defaults", 550, 0, 50), True),
        (outcome("function raises on 6 invocations", "exactly-once", "defaults", 550, 0, 50), False),
        (outcome("a batch that always fails", "at-least-once", "ours", 550, 0, 50), True),  # given up by the extension
    ],
)
def test_a_row_misses_only_what_its_guarantee_and_settings_promise(row: Outcome, expected: bool) -> None:
    assert met(row) is expected
