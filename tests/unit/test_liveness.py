"""The repair's decisions (settlement/core/liveness.py), table-tested without a broker."""

from __future__ import annotations

import pytest

from settlement.core.liveness import STALL_MARGIN_S, Action, Offsets, Sighting, action_for, sight, stall_after_s

STALL = 5.0


@pytest.mark.parametrize(
    ("offsets", "since", "now", "action"),
    [
        (Offsets(None, 100, 200), 0.0, 60.0, Action.UNKNOWN),  # the ledger never began it: the trigger pins it
        (Offsets(200, 200, 200), 0.0, 60.0, Action.IDLE),  # settled up to the end
        (Offsets(250, 200, 250), 0.0, 60.0, Action.IDLE),  # settled ahead of the trigger's commit
        (Offsets(100, 200, 200), 0.0, 4.9, Action.WATCH),  # lag, not still for long enough
        (Offsets(100, 200, 200), 0.0, 5.0, Action.REPAIR),  # lag, still: a holder that died or froze
        (Offsets(100, None, 200), 0.0, 60.0, Action.FENCE),  # the trigger committed nothing yet: only fence
        (Offsets(100, None, 200), 0.0, 9.9, Action.WATCH),  # fencing alone waits two stall periods
        (Offsets(200, 200, 300), 0.0, 60.0, Action.DRAIN),  # records waiting and nothing moves: settle them
        (Offsets(200, 200, 300), 0.0, 9.9, Action.WATCH),  # draining waits two stall periods
        (Offsets(200, 200, 300), 0.0, 10.0, Action.DRAIN),
    ],
)
def test_action_for(offsets: Offsets, since: float, now: float, action: Action) -> None:
    assert action_for(Sighting(offsets, since, since), now, STALL) is action


def test_a_rebalancing_group_is_never_drained_or_fenced_but_a_lag_is_still_repaired() -> None:
    waiting = Sighting(Offsets(200, 200, 300), 0.0, 0.0)
    assert action_for(waiting, 60.0, STALL, rebalancing=True) is Action.WATCH
    uncommitted = Sighting(Offsets(200, None, 300), 0.0, 0.0)
    assert action_for(uncommitted, 60.0, STALL, rebalancing=True) is Action.WATCH
    lagging = Sighting(Offsets(100, 200, 300), 0.0, 0.0)
    assert action_for(lagging, 60.0, STALL, rebalancing=True) is Action.REPAIR


def test_waiting_is_the_triggers_own_lag() -> None:
    assert Offsets(100, 250, 400).waiting == 150
    assert Offsets(100, None, 400).waiting == 400
    assert Offsets(100, 400, 400).waiting == 0


def test_lag_counts_only_what_the_trigger_moved_past() -> None:
    assert Offsets(100, 250, 400).lag == 150
    assert Offsets(300, 250, 400).lag == 0
    assert Offsets(None, 250, 400).lag == 0
    assert Offsets(100, None, 400).lag == 0


def test_a_moving_position_restarts_the_watch() -> None:
    first = sight(None, Offsets(100, 200, 300), now=0.0)
    same = sight(first, Offsets(100, 200, 320), now=6.0)  # records arriving at the end are no progress
    assert same.since == 0.0 and action_for(same, 6.0, STALL) is Action.REPAIR
    moved = sight(same, Offsets(150, 200, 320), now=7.0)  # the holder committed: progress
    assert moved.since == 7.0 and action_for(moved, 8.0, STALL) is Action.WATCH
    trigger_moved = sight(moved, Offsets(150, 260, 320), now=9.0)  # the trigger delivered more
    assert trigger_moved.since == 9.0


def test_lag_seconds_count_from_when_the_settled_position_last_moved() -> None:
    first = sight(None, Offsets(100, 100, 100), now=0.0)
    assert first.lag_s(0.0) == 0.0  # not behind
    behind = sight(first, Offsets(100, 150, 150), now=10.0)  # the trigger moved past; the ledger did not
    assert behind.lag_s(25.0) == 25.0
    still = sight(behind, Offsets(100, 180, 180), now=30.0)  # the trigger moves on: the position still stands
    assert still.since == 30.0 and still.lag_s(40.0) == 40.0
    moved = sight(still, Offsets(170, 180, 180), now=41.0)
    assert moved.lag_s(42.0) == 1.0


def test_the_stall_threshold_is_above_the_commit_interval() -> None:
    assert stall_after_s(0.3) == pytest.approx(0.3 + STALL_MARGIN_S)
    assert stall_after_s(60.0) > 60.0
