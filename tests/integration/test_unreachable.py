"""The tools against a broker that is not there (a closed port): each must stop within its --timeout plus a few
seconds, exit non-zero, and print a handful of lines, not librdkafka's reconnect log (before: dlq_redrive took
60 s and printed 1,162 lines, ksql_apply's topic step 30 s and 583). Runs as subprocesses, because librdkafka
writes its log to the process's stderr from C, where pytest's capture cannot see it. Needs no stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLOSED = "127.0.0.1:9"  # discard: nothing listens there
TIMEOUT_S = 3
SLACK_S = 5  # interpreter and import start-up on a busy 2-core machine


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "KSQLDB_", "CONFLUENT_"))}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *args, "--timeout", str(TIMEOUT_S)],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - started


def _lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return (done.stdout + done.stderr).splitlines()


@pytest.mark.parametrize("dry_run", [True, False])
def test_dlq_redrive_with_no_broker_fails_within_its_bound_in_one_line(dry_run: bool) -> None:
    args = ["scripts/dlq_redrive.py", "--reason", "oversize", *(["--dry-run"] if dry_run else [])]
    done, took = _run(*args, env={"KAFKA_BOOTSTRAP_SERVERS": CLOSED})
    assert done.returncode == 2
    assert TIMEOUT_S - 0.5 <= took < TIMEOUT_S + SLACK_S, took
    lines = _lines(done)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"dlq_redrive: cannot reach Kafka at {CLOSED} within {TIMEOUT_S} s: {CLOSED}/bootstrap")
    assert "Connect to ipv4#127.0.0.1:9 failed: Connection refused" in lines[0]


def test_ksql_apply_topic_step_with_no_broker_fails_within_its_bound(tmp_path: Path) -> None:
    sql = tmp_path / "one.sql"
    sql.write_text("CREATE STREAM IF NOT EXISTS X (A INT) WITH (KAFKA_TOPIC='x', VALUE_FORMAT='JSON');")
    done, took = _run(
        "scripts/ksql_apply.py", "--server", "http://127.0.0.1:9", "--bootstrap-servers", CLOSED, str(sql)
    )
    assert done.returncode == 2
    assert TIMEOUT_S - 0.5 <= took < TIMEOUT_S + SLACK_S, took
    lines = _lines(done)
    assert len(lines) == 1 and lines[0].startswith(f"ksql_apply: cannot reach Kafka at {CLOSED} within {TIMEOUT_S} s:")
    assert "Connection refused" in lines[0] and lines[0].endswith("(the topic step; --skip-topics skips it)")
