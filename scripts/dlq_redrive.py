"""Redrive dead letters: re-produce records from the dead-letter topic to `user_trades` once the cause is fixed.

    python scripts/dlq_redrive.py --reason oversize [--reason unknown-schema-id] [--dry-run]
    python scripts/dlq_redrive.py --partition 2 --from-offset 1000 --to-offset 1999 --to user_trades-replay
    python scripts/dlq_redrive.py --since 2026-11-25T10:00:00Z --until 2026-11-25T11:00:00Z

Each redriven record is the original key, value and headers, plus `dlq.redrive.count` (a record already
redriven `--max-redrives` times is refused, not looped) and its original coordinates
(`dlq.redrive.source.topic/partition/offset`). Filters: `--reason` (repeatable), the original record's
partition and offset range, and a time range on when it was dead-lettered. Dead letters that were shrunk
because they were too large (`dlq.original.value.sha256`) cannot be redriven whole and are reported, never sent.

Exactly once: the records sent and the tool's progress in the dead-letter topic (a consumer group per filter
set and target, or `--group`) are committed in one Kafka transaction (idempotent, acks=all), so an interrupted
redrive resumes where the last transaction ended, with no duplicates and no gaps, and a second run with the
same filters sends nothing; a redrive with other filters starts over, so what one passed over remains for
another. It reads up to the end offsets it saw at start, then stops. `--dry-run` commits nothing.

Connection settings are the function's app settings, from the environment: KAFKA_BOOTSTRAP_SERVERS,
KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD (SASL_SSL PLAIN when set), KAFKA_SECURITY_PROTOCOL,
DEAD_LETTER_TOPIC, USER_TRADES_TOPIC. A broker that does not answer within `--timeout` stops the tool with one
line saying so (exit 2); the Kafka client's own log lines are never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from devstack.cli_support import DEFAULT_TIMEOUT_S, ClientLog, HelpFormatter, kafka_error_text, unreachable
from settlement.core import (
    FAILED_AT,
    HEADERS,
    ORIGINAL_KEY_SHA256,
    ORIGINAL_VALUE_SHA256,
    REASON,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    PoisonKind,
)
from settlement.runtime import kafka_client_conf

# The reasons the function writes (settlement/core/poison.py): a --reason outside them would match nothing, silently.
REASONS = tuple(kind.value for kind in PoisonKind)

REDRIVE_COUNT = "dlq.redrive.count"
REDRIVE_SOURCE_TOPIC = "dlq.redrive.source.topic"
REDRIVE_SOURCE_PARTITION = "dlq.redrive.source.partition"
REDRIVE_SOURCE_OFFSET = "dlq.redrive.source.offset"
# A redriven record goes back with its own headers only, plus the redrive's: never the dead letter's.
_DLQ_HEADERS = HEADERS | {
    REDRIVE_COUNT,
    REDRIVE_SOURCE_TOPIC,
    REDRIVE_SOURCE_PARTITION,
    REDRIVE_SOURCE_OFFSET,
}


class RedriveError(RuntimeError):
    """A bad setting or argument; the message says which."""


@dataclass(frozen=True)
class Filters:
    reasons: frozenset[str] = frozenset()
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.reasons) - set(REASONS))
        if unknown:
            raise ValueError(f"unknown dead-letter reason {', '.join(unknown)}: the reasons are {', '.join(REASONS)}")

    def matches(self, reason: str, partition: int, offset: int, failed_ms: int) -> bool:
        return (
            (not self.reasons or reason in self.reasons)
            and (self.partition is None or partition == self.partition)
            and (self.from_offset is None or offset >= self.from_offset)
            and (self.to_offset is None or offset <= self.to_offset)
            and (self.since_ms is None or failed_ms >= self.since_ms)
            and (self.until_ms is None or failed_ms < self.until_ms)
        )


@dataclass
class Report:
    sent: Counter[str] = field(default_factory=Counter)
    filtered_out: int = 0
    refused_loop: Counter[str] = field(default_factory=Counter)
    refused_shrunk: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    committed: int = 0  # records sent in transactions that committed (sent may include an aborted one's)
    transactions: int = 0


def _headers(msg: Message) -> list[tuple[str, bytes]]:
    raw: Any = msg.headers() or []
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in raw]


def _text(headers: Sequence[tuple[str, bytes]], name: str, default: str = "") -> str:
    for k, v in headers:
        if k == name:
            return v.decode("utf-8", "replace")
    return default


def _failed_ms(headers: Sequence[tuple[str, bytes]], msg: Message) -> int:
    stamp = _text(headers, FAILED_AT)
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000)
    except ValueError:
        return int(msg.timestamp()[1])


def plan(msg: Message, filters: Filters, max_redrives: int, report: Report) -> list[tuple[str, bytes]] | None:
    """The headers of the record to send for one dead letter, or None when it is not to be sent."""
    headers = _headers(msg)
    reason = _text(headers, REASON, "unknown")
    partition = int(_text(headers, SOURCE_PARTITION, "-1") or -1)
    offset = int(_text(headers, SOURCE_OFFSET, "-1") or -1)
    if not filters.matches(reason, partition, offset, _failed_ms(headers, msg)):
        report.filtered_out += 1
        return None
    if any(k in (ORIGINAL_VALUE_SHA256, ORIGINAL_KEY_SHA256) for k, _ in headers):
        report.refused_shrunk[reason] += 1
        return None
    count = int(_text(headers, REDRIVE_COUNT, "0") or 0)
    if count >= max_redrives:
        report.refused_loop[reason] += 1
        return None
    own = [(k, v) for k, v in headers if k not in _DLQ_HEADERS and not k.startswith("dlq.original.")]
    first_topic = _text(headers, REDRIVE_SOURCE_TOPIC) or _text(headers, SOURCE_TOPIC)
    first_partition = _text(headers, REDRIVE_SOURCE_PARTITION) or str(partition)
    first_offset = _text(headers, REDRIVE_SOURCE_OFFSET) or str(offset)
    report.sent[reason] += 1
    if len(report.examples) < 10:
        report.examples.append(f"{reason}: {first_topic}/{first_partition}/{first_offset} (redrive {count + 1})")
    return [
        *own,
        (REDRIVE_COUNT, str(count + 1).encode()),
        (REDRIVE_SOURCE_TOPIC, first_topic.encode()),
        (REDRIVE_SOURCE_PARTITION, first_partition.encode()),
        (REDRIVE_SOURCE_OFFSET, first_offset.encode()),
    ]


def redrive(
    env: Mapping[str, str],
    filters: Filters,
    target: str | None = None,
    group: str = "dlq-redrive",
    dry_run: bool = False,
    max_redrives: int = 3,
    batch: int = 500,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    stop_after: int | None = None,
) -> Report:
    """Read the dead-letter topic from the group's last commit to today's end; send what the filters pass.
    Every broker call waits at most `timeout_s`; the first is a metadata request, so a broker that is not there
    costs `timeout_s`, not one wait per step. `stop_after` ends the run after that many transactions (tests
    interrupt a redrive with it)."""
    settings = kafka_client_conf(env)
    log = ClientLog(secrets=[str(settings.get("sasl.password", "")), str(settings.get("sasl.username", ""))])
    conf = {**settings, **log.conf()}
    dlq = env.get("DEAD_LETTER_TOPIC") or "user_trades-dlq"
    target = target or env.get("USER_TRADES_TOPIC") or "user_trades"
    consumer = Consumer(
        {
            **conf,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            # Under exactly-once the function writes dead letters in transactions: a partition's end is then a
            # commit marker, never a record, so the end is known by the EOF event, not by a last offset.
            "enable.partition.eof": True,
        }
    )
    producer = None
    report = Report()
    in_transaction = False
    try:
        try:
            meta = consumer.list_topics(dlq, timeout=timeout_s).topics.get(dlq)
        except KafkaException as exc:
            consumer.poll(0)  # serves the client's queued log lines and errors into `log`
            raise RedriveError(unreachable("Kafka", settings["bootstrap.servers"], timeout_s, log, exc)) from None
        if meta is None or meta.error is not None:
            raise RedriveError(f"DEAD_LETTER_TOPIC: topic {dlq} does not exist")
        if not dry_run:
            producer = Producer(
                {
                    **conf,
                    "transactional.id": f"{group}-{dlq}",
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                }
            )
            producer.init_transactions(timeout_s)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(dlq, p), timeout=timeout_s)[1] for p in meta.partitions
        }
        committed = consumer.committed([TopicPartition(dlq, p) for p in ends], timeout=timeout_s)
        starts = {tp.partition: max(tp.offset, 0) for tp in committed}
        for tp in committed:
            if tp.offset < 0:
                starts[tp.partition] = consumer.get_watermark_offsets(
                    TopicPartition(dlq, tp.partition), timeout=timeout_s
                )[0]
        remaining = {p for p in ends if starts[p] < ends[p]}
        consumer.assign([TopicPartition(dlq, p, starts[p]) for p in remaining])
        transactions = 0
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            got = consumer.consume(batch, timeout=1.0)
            msgs = [m for m in got if m.error() is None]
            at_end = {
                int(m.partition() or 0)
                for m in got
                if (err := m.error()) is not None
                and err.code() == KafkaError._PARTITION_EOF
                and int(m.offset() or 0) >= ends.get(int(m.partition() or 0), 0)
            }
            if not msgs:
                remaining -= at_end  # nothing left but markers (or aborted records) before the end
                continue
            deadline = time.monotonic() + timeout_s
            msgs = [m for m in msgs if int(m.offset() or 0) < ends[int(m.partition() or 0)]]
            if producer is not None:
                producer.begin_transaction()
                in_transaction = True
            planned = 0
            for msg in msgs:
                headers = plan(msg, filters, max_redrives, report)
                if headers is not None:
                    planned += 1
                    if producer is not None:
                        producer.produce(target, key=msg.key(), value=msg.value(), headers=list(headers))
            last: dict[int, int] = {}
            for msg in msgs:
                last[int(msg.partition() or 0)] = max(last.get(int(msg.partition() or 0), -1), int(msg.offset() or 0))
            if producer is not None:
                offsets = [TopicPartition(dlq, p, o + 1) for p, o in last.items()]
                producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), timeout_s)
                producer.commit_transaction(timeout_s)
                in_transaction = False
                report.committed += planned
                report.transactions += 1
            for p, o in last.items():
                if o + 1 >= ends[p]:
                    remaining.discard(p)
            remaining -= at_end
            transactions += 1
            if stop_after is not None and transactions >= stop_after:
                break
        if remaining and (stop_after is None or transactions < stop_after):
            raise RedriveError(f"timed out reading {dlq}: partitions {sorted(remaining)} not read to the end")
    except KafkaException as exc:
        if producer is not None and in_transaction:
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(min(timeout_s, 10.0))
        raise RedriveError(
            f"redrive stopped: {kafka_error_text(exc)}; {_what_was_kept(report, dry_run, in_transaction)}"
        ) from None
    finally:
        consumer.close()
    return report


def _what_was_kept(report: Report, dry_run: bool, in_transaction: bool) -> str:
    """What an interrupted run leaves behind, in words: the user decides from it whether to re-run."""
    if dry_run:
        return "a dry run sends and commits nothing"
    done = (
        f"{report.transactions} earlier transaction(s) committed {report.committed} record(s) and their progress, "
        "so a re-run resumes after them"
        if report.transactions
        else "nothing was committed"
    )
    if in_transaction:
        return f"the open transaction was aborted (a read_committed reader sees none of its records); {done}"
    return done


def progress_group(filters: Filters, target: str) -> str:
    """The consumer group of one redrive: the same filters and target resume (and a repeat sends nothing); other
    filters start from the beginning, so records one redrive passed over remain for another."""
    key = repr((sorted(filters.reasons), filters.partition, filters.from_offset, filters.to_offset))
    key += repr((filters.since_ms, filters.until_ms, target))
    return "dlq-redrive-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _epoch_ms(text: str | None) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--reason",
        action="append",
        default=[],
        choices=REASONS,
        metavar="REASON",
        help=f"dead-letter reason to redrive (repeatable; default: every reason), one of: {', '.join(REASONS)}",
    )
    parser.add_argument("--partition", type=int, help="source partition of the original records")
    parser.add_argument("--from-offset", type=int, help="first source offset (inclusive)")
    parser.add_argument("--to-offset", type=int, help="last source offset (inclusive)")
    parser.add_argument("--since", help="dead-lettered at or after (ISO 8601)")
    parser.add_argument("--until", help="dead-lettered before (ISO 8601)")
    parser.add_argument("--to", dest="target", help="target topic (default: USER_TRADES_TOPIC)")
    parser.add_argument("--group", help="consumer group that records progress (default: one per filter set and target)")
    parser.add_argument("--max-redrives", type=int, default=3, help="refuse records redriven this often")
    parser.add_argument("--dry-run", action="store_true", help="count and show, send and commit nothing")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="how long each broker call may wait; with no broker the tool stops after this",
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    try:
        filters = Filters(
            frozenset(args.reason),
            args.partition,
            args.from_offset,
            args.to_offset,
            _epoch_ms(args.since),
            _epoch_ms(args.until),
        )
        group = args.group or progress_group(filters, args.target or env.get("USER_TRADES_TOPIC") or "user_trades")
        report = redrive(env, filters, args.target, group, args.dry_run, args.max_redrives, timeout_s=args.timeout)
    except (RedriveError, ValueError) as exc:
        print(f"dlq_redrive: {exc}", file=sys.stderr)
        return 2
    verb = "would send" if args.dry_run else "sent"
    for reason, n in sorted(report.sent.items()):
        print(f"{verb:>10} {n:>7}  {reason}")
    for reason, n in sorted(report.refused_loop.items()):
        print(f"{'refused':>10} {n:>7}  {reason} (already redriven {args.max_redrives} times)")
    for reason, n in sorted(report.refused_shrunk.items()):
        print(f"{'refused':>10} {n:>7}  {reason} (shrunk when dead-lettered: the original is not in the record)")
    print(f"{'left':>10} {report.filtered_out:>7}  not matching the filters")
    for example in report.examples:
        print(f"  {example}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
