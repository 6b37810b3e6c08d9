"""The scripts/ tools' shared edges: help that shows defaults (never a credential), and a client log that keeps
librdkafka's lines for the one error line instead of printing them."""

from __future__ import annotations

import argparse
import importlib

import pytest

from devstack.cli_support import ClientLog, HelpFormatter, unreachable


def _help(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_help().split())


def test_defaults_are_shown_except_none_flags_and_credentials() -> None:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--count", type=int, default=5, help="how many")
    parser.add_argument("--rate", default="5%", help="share")
    parser.add_argument("--url", default="https://user:pa55w0rd@registry.example/x", help="registry")
    parser.add_argument("--group", help="unset")
    parser.add_argument("--dry-run", action="store_true", help="flag")
    parser.add_argument("--reason", action="append", default=[], help="repeatable")
    text = _help(parser)
    assert "how many (default: 5)" in text and "share (default: 5%)" in text
    assert "registry (default: https://****@registry.example/x)" in text and "pa55w0rd" not in text
    assert "unset --dry-run flag --reason REASON repeatable" in text  # no "(default: ...)" after any of them


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("scripts.capacity_model", "partitions of the source topic (max instances) (default: 100)"),
        ("scripts.cost_model", "records of one burst (backlog) (default: 5000000)"),
        ("scripts.smoke_check", "trades to write, 1..1000 (default: 5)"),
    ],
)
def test_each_tool_shows_its_defaults(module: str, expected: str, capsys) -> None:
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit):
        main(["--help"]) if module != "scripts.smoke_check" else main(["--help"], env={})
    assert expected in " ".join(capsys.readouterr().out.split())


def test_the_client_log_keeps_the_reason_without_the_prefix_and_masks_secrets() -> None:
    log = ClientLog(secrets=["sasl-secret-1234", ""])
    assert log.cause() == "" and log.conf()["logger"].propagate is False
    log.note("FAIL [rdkafka#consumer-1] [thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect failed")
    assert log.cause() == "127.0.0.1:9/bootstrap: Connect failed" and log.lines == 1
    log.note("SASL authentication error for sasl-secret-1234")
    assert log.cause() == "SASL authentication error for ****"
    assert unreachable("Kafka", "b:9092", 3.0, log, None) == (
        "cannot reach Kafka at b:9092 within 3 s: SASL authentication error for ****"
    )
