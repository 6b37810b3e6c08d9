"""`python -m devstack local-settings`: a `local.settings.json` for `func start` against the running local stack.

Why: the checked-in `local.settings.json.example` names 127.0.0.1:9092 and :8081, while the local stack picks free
ports, and the stack's broker creates no topic by itself (auto-create is off, as on Confluent Cloud). This writes
the example with the stack's two addresses and nothing else changed, and creates the three topics the function
reads and writes, named as the settings name them.

It never overwrites an existing file unless asked (`--force`): that file is the user's and may hold secrets. It
prints setting names, the two addresses and topic names only, never a setting's value otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.errors import StackError
from devstack.fetch import ROOT

EXAMPLE = ROOT / "local.settings.json.example"
OUTPUT = ROOT / "local.settings.json"
# The settings that name the function's topics, and the defaults settlement/runtime/config.py and function_app.py fall
# back to when a setting is unset (tests/unit/test_local_settings.py checks them against load_settings).
TOPIC_SETTINGS = {
    "USER_TRADES_TOPIC": "user_trades",
    "SETTLEMENTS_TOPIC": "trade-settlements",
    "DEAD_LETTER_TOPIC": "user_trades-dlq",
}
# As scripts/ksql_apply.py creates them: the source and settlements share a count; the dead-letter topic is small.
DEFAULT_PARTITIONS = 6
DLQ_PARTITIONS = 1
STORAGE_NOTE = (
    "AzureWebJobsStorage is UseDevelopmentStorage=true: the Functions host keeps the Kafka trigger's state "
    "(host locks, scale and listener state) in a storage account, so start Azurite before `func start` "
    "(e.g. `npx azurite --silent --location .azurite`), or put a real storage account's connection string there"
)
_QUIET = logging.Logger("devstack.local-settings")  # librdkafka's log lines go nowhere; errors are raised


@dataclass(frozen=True)
class Written:
    """What `write_local_settings` did, for the summary the command prints."""

    path: Path
    topics: dict[str, tuple[int, bool]]  # topic -> (partitions, created by this call)


def render(example: Mapping[str, Any], bootstrap: str, registry_url: str) -> dict[str, Any]:
    """The example with the stack's addresses: every other key and value kept as it is, in its order.

    `FUNCTIONS_WORKER_RUNTIME` is pinned to python (the host refuses to index a Python app under another worker)
    and `AzureWebJobsStorage` kept, or set to the development storage when the example lacks it.
    """
    values = example.get("Values")
    if not isinstance(values, dict):
        raise StackError(f'{EXAMPLE.name} has no "Values" object')
    out = json.loads(json.dumps(example))  # a deep copy that keeps key order
    out["Values"].update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SCHEMA_REGISTRY_URL": registry_url,
            "FUNCTIONS_WORKER_RUNTIME": "python",
        }
    )
    out["Values"].setdefault("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    return out


def topic_names(values: Mapping[str, Any]) -> dict[str, str]:
    """Setting name -> topic, as the written settings name them (a blank value falls back as config does)."""
    return {name: (str(values.get(name) or "").strip() or default) for name, default in TOPIC_SETTINGS.items()}


def ensure_topics(bootstrap: str, wanted: Mapping[str, int], timeout_s: float = 20.0) -> dict[str, tuple[int, bool]]:
    """Create the topics that are missing (replication 1: the local broker is one node); leave existing ones as
    they are. Returns topic -> (partitions, created now)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _QUIET}
    admin = AdminClient(conf)
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException:
        raise StackError(f"cannot reach the local broker at {bootstrap} within {timeout_s:g} s") from None
    result = {name: (len(existing[name].partitions), False) for name in wanted if name in existing}
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=1) for name, n in wanted.items() if name not in result
    ]
    for name, future in admin.create_topics(missing).items() if missing else []:
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"cannot create topic {name}: {exc.args[0].str() if exc.args else exc}") from None
            result[name] = (wanted[name], False)
            continue
        result[name] = (wanted[name], True)
    return result


def write_local_settings(
    bootstrap: str,
    registry_url: str,
    output: Path = OUTPUT,
    example: Path = EXAMPLE,
    force: bool = False,
    partitions: int = DEFAULT_PARTITIONS,
    timeout_s: float = 20.0,
) -> Written:
    """Create the topics, then write `output` from `example` pointed at this stack (owner-only permissions: it
    is where a user puts secrets). Refuses to replace an existing file unless `force`."""
    if output.exists() and not force:
        raise StackError(f"{output} exists; pass --force to replace it with a fresh copy of {example.name}")
    try:
        settings = render(json.loads(example.read_text()), bootstrap, registry_url)
    except (OSError, json.JSONDecodeError) as exc:
        raise StackError(f"cannot read {example}: {exc}") from None
    names = topic_names(settings["Values"])
    wanted = {
        names["USER_TRADES_TOPIC"]: partitions,
        names["SETTLEMENTS_TOPIC"]: partitions,
        names["DEAD_LETTER_TOPIC"]: DLQ_PARTITIONS,
    }
    topics = ensure_topics(bootstrap, wanted, timeout_s)
    _write_private(output, json.dumps(settings, indent=2) + "\n")
    return Written(output, topics)


def _write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600: a half-written settings file or one others can read is worse than none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary(written: Written, bootstrap: str, registry_url: str) -> list[str]:
    """The lines the command prints: addresses, topics and what to do next; no setting's value beyond those."""
    lines = [f"wrote {written.path}", f"  KAFKA_BOOTSTRAP_SERVERS={bootstrap}", f"  SCHEMA_REGISTRY_URL={registry_url}"]
    for topic, (n, created) in written.topics.items():
        lines.append(f"  topic {topic}: {n} partition(s), {'created' if created else 'exists'}")
    lines.append(STORAGE_NOTE)
    lines.append("then: func start (Azure Functions Core Tools 4)")
    return lines
