"""What the command-line tools (scripts/, devstack) share at their edges: help that shows defaults, and Kafka clients
that stay quiet. It lives in devstack, the lowest tooling layer, so that devstack's own CLI uses it without importing
scripts/ above it.

Why: with no broker, a librdkafka client logs every reconnect attempt to stderr (about 20 lines a second), so a
tool that waited 60 s printed over a thousand lines and buried its one useful error. Here a client's log lines
and error events are kept in memory instead, and the last of them becomes the cause in the tool's single line.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

# How long a tool waits for a broker before saying it cannot reach it: long enough for a cloud cluster's first
# connection (TLS + SASL), short enough that a wrong address fails while the user is still looking.
DEFAULT_TIMEOUT_S = 20.0
# librdkafka's lines reach a Python logger as "FAC [client#id] [thrd:name]: text": the text is what matters.
_USERINFO = re.compile(r"//[^/@\s]*@")
_LOG_PREFIX = re.compile(r"^(?:[A-Z_]+ \[[^\]]*\] )?(?:\[thrd:[^\]]*\]:\s*)?")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each option's default after its help text.

    Options with no default (None), flags (False) and empty lists show none: "(default: None)" says nothing.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or not action.option_strings:
            return text
        if default is None or default is False or default == [] or default is argparse.SUPPRESS:
            return text
        # A default read from the environment may be a URL with credentials in it: those are never shown.
        shown = _USERINFO.sub("//****@", str(default)).replace("%", "%%")
        return f"{text} (default: {shown})".strip()


class ClientLog:
    """Collects what librdkafka clients would print: pass `conf()` into each client's configuration.

    Log lines and error events are delivered only while a client is polled, and land here, never on stderr.
    `cause()` is the last one, the line that usually says why (e.g. "Connect to ipv4#127.0.0.1:9 failed:
    Connection refused"), with any of `secrets` masked.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = [s for s in secrets if s]
        self.lines = 0
        self.last: str | None = None
        self._logger = logging.Logger("scripts.kafka-client")  # not in the logging tree: nothing propagates
        self._logger.propagate = False
        self._logger.addHandler(_Keep(self))

    def conf(self) -> dict[str, Any]:
        """The client settings that route its logs and errors here."""
        return {"logger": self._logger, "error_cb": self._on_error}

    def _on_error(self, error: Any) -> None:
        self.note(str(error.str()) if hasattr(error, "str") else str(error))

    def note(self, text: str) -> None:
        """Keep one log line or error text."""
        self.lines += 1
        self.last = _LOG_PREFIX.sub("", text).strip()

    def cause(self) -> str:
        """The last thing a client reported, secrets masked; "" when it reported nothing."""
        text = self.last or ""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "****")
        return text


class _Keep(logging.Handler):
    def __init__(self, sink: ClientLog) -> None:
        super().__init__()
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.note(record.getMessage())


def unreachable(what: str, address: str, timeout_s: float, log: ClientLog, error: object) -> str:
    """The one line for a broker that did not answer in time: where, how long, and the client's own reason."""
    cause = log.cause() or kafka_error_text(error)
    return f"cannot reach {what} at {address} within {timeout_s:g} s: {cause}"


def kafka_error_text(error: object) -> str:
    """A KafkaException's own words ("Failed to get metadata: ...") without the KafkaError{code=...} wrapper."""
    inner = error.args[0] if isinstance(error, Exception) and error.args else error
    text = getattr(inner, "str", None)
    return str(text()) if callable(text) else str(inner)


def kafka_conf(bootstrap: str, env: Mapping[str, str]) -> dict[str, str]:
    """librdkafka settings for the tools that work on Confluent Cloud from a laptop (the topic step, the
    smoke check): SASL_SSL PLAIN when the environment holds a Kafka API key (`KAFKA_API_KEY` /
    `KAFKA_API_SECRET`), plaintext otherwise (the local stack)."""
    conf = {"bootstrap.servers": bootstrap}
    if env.get("KAFKA_API_KEY") and env.get("KAFKA_API_SECRET"):
        conf.update(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "PLAIN",
                "sasl.username": env["KAFKA_API_KEY"],
                "sasl.password": env["KAFKA_API_SECRET"],
            }
        )
    return conf
