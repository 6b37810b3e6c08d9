"""The main job (`scripts/run.sh` → `python -m localrun.experiments.main`; README "Run it", docs/testing.md) end to
end, with a scale-out in the middle of the stream, under the default exactly-once guarantee: its check must pass (every
input settled or dead-lettered exactly once as a read_committed reader sees it, matched by source identity,
whatever the host redelivered at the rebalances) and its exit status must say so. The run includes the Flink engine
(its own process, as the main job starts it): the join and the analysis, checked at both ends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_main_job_scales_out_mid_stream_and_its_check_passes(stack) -> None:
    if not stack.owned:
        pytest.skip("the main job brings up the local stack itself; this run uses a stack it does not own")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SCHEMA_REGISTRY"))}
    # One instance, a scale-controller evaluation every second and a low lag threshold: the first evaluation
    # finds a backlog and scales out to the partition count while records are still flowing.
    argv = ["--trades", "150000", "--partitions", "4", "--evaluation-interval", "1", "--lag-threshold", "100"]
    proc = subprocess.run(
        [sys.executable, "-m", "localrun.experiments.main", *argv, "--no-chart"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    check = re.search(
        r"check: inputs (\d+) = settlements (\d+) \+ dead letters (\d+) - duplicates (\d+); lost (\d+): OK", out
    )
    assert check, out[-3000:]
    inputs, settled, dead, duplicates, lost = (int(x) for x in check.groups())
    assert inputs == 150_004 and lost == 0 and duplicates == 0 and dead == 4  # the 4 poison records
    assert settled + dead == inputs
    assert re.search(r"exactly-once: the host delivered \d+ records twice", out), out[-3000:]
    peak = re.search(r"peak instances (\d+)", out)
    assert peak and int(peak.group(1)) > 1, "the scale controller never scaled out"
    join = re.search(r"join \(flink/02-user-trades.sql\): (\d+)/(\d+) trades in user_trades, (\d+) with no users row.*"
                     r"(\d+) after User_3's region changed; missing 0, extra 0: OK", out)  # fmt: skip
    assert join and join.group(1) == join.group(2) == "150000" and int(join.group(3)) > 0, out[-3000:]
    windows = r"analysis check: \d+ one-minute and \d+ hourly windows against the same sums"
    assert re.search(windows + r" over the 150000 settlements a read_committed reader sees: OK", out), out[-3000:]
