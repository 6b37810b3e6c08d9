"""dlq_redrive's arguments and messages, without a broker: reasons from settlement/core/poison.py, help with defaults,
and what an interrupted run says it kept."""

from __future__ import annotations

import pytest

from scripts.dlq_redrive import REASONS, Filters, Report, _what_was_kept, main
from settlement.core.poison import PoisonKind


def test_the_reasons_are_the_poison_kinds() -> None:
    assert set(REASONS) == {kind.value for kind in PoisonKind} and "oversize" in REASONS


def test_an_unknown_reason_is_refused_before_any_connection(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--reason", "oversized"], env={})  # no KAFKA_BOOTSTRAP_SERVERS: it must not get that far
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'oversized'" in err and "'oversize'" in err


def test_filters_refuse_an_unknown_reason() -> None:
    with pytest.raises(ValueError, match="unknown dead-letter reason Oversize: the reasons are empty-value, "):
        Filters(reasons=frozenset({"oversize", "Oversize"}))
    assert Filters(reasons=frozenset(REASONS)).matches("bad-key", 0, 0, 0)


def test_help_shows_the_defaults_and_the_reasons(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"], env={})
    out = " ".join(capsys.readouterr().out.split())
    assert "--timeout SECONDS how long each broker call may wait" in out and "(default: 20.0)" in out
    assert "refuse records redriven this often (default: 3)" in out
    assert "unknown-schema-id" in out and "(default: None)" not in out and "(default: [])" not in out


def test_a_bad_timeout_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--timeout", "0"], env={})
    assert done.value.code == 2 and "--timeout must be a positive number" in capsys.readouterr().err


def test_what_an_interrupted_run_says_it_kept() -> None:
    assert _what_was_kept(Report(), dry_run=True, in_transaction=False) == "a dry run sends and commits nothing"
    assert _what_was_kept(Report(), dry_run=False, in_transaction=False) == "nothing was committed"
    two = Report(committed=7, transactions=2)
    assert _what_was_kept(two, dry_run=False, in_transaction=True) == (
        "the open transaction was aborted (a read_committed reader sees none of its records); 2 earlier "
        "transaction(s) committed 7 record(s) and their progress, so a re-run resumes after them"
    )
