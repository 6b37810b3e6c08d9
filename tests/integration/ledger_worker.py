"""A function-app process for the exactly-once tests: it imports the real app and, on each stdin command,
hands it a batch read off the real source topic, the way the host would after a rebalance or a crash.

Commands: `settle PARTITION FIRST LAST` (a batch of those offsets, through the library's converter into the
Kafka-triggered function), `repair` (one run of the repair timer's function, with the timer shape the library
decodes; answers a JSON line per partition run: `{"partition", "action", "settled", "lag", "error"}` as one
list), `exit` (a graceful stop: the ledger commits what it holds). Each answers one line: `ok`, the repair's
JSON, or `error <type> <message>`. Argument 1 is a JSON object of app settings.
"""

from __future__ import annotations

import json
import os
import sys
import uuid


def main() -> int:
    os.environ.update(json.loads(sys.argv[1]))
    from confluent_kafka import Consumer, TopicPartition

    import function_app
    from tests.integration.pipeline import as_events

    topic = os.environ["USER_TRADES_TOPIC"]
    reader = Consumer(
        {
            "bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            "group.id": f"ledger-worker-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    print("ready", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "exit":
            function_app.root.reset()
            print("ok", flush=True)
            return 0
        if command == "repair":
            print(json.dumps(_repair()), flush=True)
            continue
        partition, first, last = (int(a) for a in args)
        reader.assign([TopicPartition(topic, partition, first)])
        batch = []
        while not batch or (batch[-1].offset() or 0) < last:
            batch.extend(m for m in reader.consume(500, timeout=1) if m.error() is None)
        batch = [m for m in batch if (m.offset() or 0) <= last]
        try:
            function_app.settle_user_trades(as_events(batch))
        except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
            print(f"error {type(exc).__name__} {exc}".replace("\n", " "), flush=True)
        else:
            print("ok", flush=True)
    return 0


def _repair() -> list[dict[str, object]]:
    """One timer invocation of the repair function, then what its run did (read back from the process's repair)."""
    import function_app
    from localrun.platform.timers import timer_request

    function_app.repair_settlements(timer_request(past_due=False))
    repair = function_app.root.services().repair()
    assert repair is not None and repair.last is not None
    return [
        {"partition": p.partition, "action": p.action.value, "settled": p.settled, "lag": p.offsets.lag,
         "error": p.error}
        for p in repair.last.partitions
    ]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
