"""Smoke check a deployed pipeline: produce a few trades, read their settlements back, within a timeout.

    python scripts/smoke_check.py --bootstrap-servers pkc-….confluent.cloud:9092 \
        --schema-registry-url https://psrc-….confluent.cloud [--via user_trades|stocktrade] [--count 5] [--timeout 120]

Why: after a deploy nothing says the function runs until a trade goes through. This writes `--count` trades and
waits until each has exactly one settlement (or one dead letter) that a read_committed reader sees:

- `--via user_trades` (default): trades encoded as ksqlDB's `USER_TRADES` writes them (UTF-8 USERID key,
  Confluent-framed Protobuf `UserTrade`, the schema registered as ksqlDB registers it), matched to settlements by
  source partition and offset. Checks the function alone; it also runs against the local stack.
- `--via stocktrade`: JSON trades into `stocktrade`, so ksqlDB's join is in the path too, matched by a symbol
  unique to this run (the join's output offsets are not known here).

Credentials come from the environment only: `KAFKA_API_KEY`/`KAFKA_API_SECRET` (SASL_SSL PLAIN) and
`SCHEMA_REGISTRY_API_KEY`/`SCHEMA_REGISTRY_API_SECRET`, never the command line. Exit 0 when every trade is
settled, 1 on a timeout (saying how many are missing), 2 on a usage or connection error.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from devstack.cli_support import HelpFormatter, kafka_conf
from settlement.schemas import TradeSettlement, UserTrade


class SmokeError(RuntimeError):
    """A usage or connection problem; the message is what the user needs."""


@dataclass
class Outcome:
    """What the check saw for the trades it wrote."""

    expected: int
    settled: dict[tuple[int, int] | str, TradeSettlement] = field(default_factory=dict)
    dead_letters: int = 0
    duplicates: int = 0

    @property
    def missing(self) -> int:
        return self.expected - len(self.settled) - self.dead_letters


def registry_conf(url: str, env: Mapping[str, str]) -> dict[str, str]:
    conf = {"url": url}
    if env.get("SCHEMA_REGISTRY_API_KEY") and env.get("SCHEMA_REGISTRY_API_SECRET"):
        conf["basic.auth.user.info"] = f"{env['SCHEMA_REGISTRY_API_KEY']}:{env['SCHEMA_REGISTRY_API_SECRET']}"
    return conf


def smoke_trades(count: int, symbol: str) -> list[tuple[str, UserTrade]]:
    """Small trades for known users (Datagen's USERS quickstart has User_1..User_9), one symbol for this run."""
    return [
        (
            f"User_{i % 9 + 1}",
            UserTrade(regionid="Region_1", quantity=i + 1, symbol=symbol, price=10, account="SMOKE", side="BUY"),
        )
        for i in range(count)
    ]


def payload(value: bytes) -> bytes:
    """The Protobuf bytes of a Confluent-framed value: magic byte, schema id, message-index array."""
    if len(value) < 6 or value[0] != 0:
        raise ValueError("not Confluent-framed")
    pos = 5

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            byte = value[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)  # zigzag
            shift += 7

    for _ in range(varint()):
        varint()
    return value[pos:]


def _text_headers(msg: Message) -> dict[str, str]:
    """A dead letter's headers as text (its `dlq.source.*` coordinates)."""
    out: dict[str, str] = {}
    headers: list[tuple[str, bytes | None]] = list(msg.headers() or [])  # type: ignore[arg-type]
    for name, value in headers:
        out[name] = (value or b"").decode("utf-8", "replace")
    return out


_MOMENTARY = frozenset(
    {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}
)


def _end_offsets(consumer: Consumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    """Where each partition of `topic` ends now: the check reads only what comes after."""
    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None:
        raise SmokeError(f"topic {topic} does not exist (run scripts/ksql_apply.py first, it creates the topics)")
    deadline = time.monotonic() + timeout_s
    positions = []
    for p in meta.partitions:
        while True:
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                break
            except KafkaException as exc:
                # A topic just created, or a leader moving: the broker answers NOT_LEADER_FOR_PARTITION for a moment.
                if exc.args[0].code() not in _MOMENTARY or time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
        positions.append(TopicPartition(topic, p, high))
    return positions


def run(
    bootstrap: str,
    registry_url: str,
    env: Mapping[str, str],
    *,
    via: str = "user_trades",
    count: int = 5,
    timeout_s: float = 120.0,
    source_topic: str = "user_trades",
    stocktrade_topic: str = "stocktrade",
    settlements_topic: str = "trade-settlements",
    dead_letter_topic: str = "user_trades-dlq",
) -> Outcome:
    """Produce the trades, then read both output topics from where they ended until every trade is accounted for
    or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    conf = kafka_conf(bootstrap, env)
    symbol = "SMK" + secrets.token_hex(3).upper()
    reader = Consumer(
        {
            **conf,
            "group.id": f"smoke-check-{symbol.lower()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    outcome = Outcome(count)
    try:
        try:
            start = _end_offsets(reader, settlements_topic, 15) + _end_offsets(reader, dead_letter_topic, 15)
        except KafkaException as exc:
            raise SmokeError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
        reader.assign(start)
        producer = Producer({**conf, "enable.idempotence": True, "acks": "all"})
        written: dict[tuple[int, int], str] = {}
        errors: list[str] = []

        def on_delivery(err: object, msg: Message) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                written[(msg.partition() or 0, msg.offset() or 0)] = str(msg.key())

        trades = smoke_trades(count, symbol)
        if via == "user_trades":
            from confluent_kafka.schema_registry import SchemaRegistryClient

            from localrun.experiments import ksql_schema

            client = SchemaRegistryClient(registry_conf(registry_url, env))
            schema_id = ksql_schema.register(client, f"{source_topic}-value")
            for user, trade in trades:
                producer.produce(
                    source_topic, key=user.encode(), value=ksql_schema.encode(schema_id, trade), on_delivery=on_delivery
                )
        else:
            for user, trade in trades:
                body = {
                    "side": trade.side,
                    "quantity": trade.quantity,
                    "symbol": trade.symbol,
                    "price": trade.price,
                    "account": trade.account,
                    "userid": user,
                }
                producer.produce(stocktrade_topic, key=user.encode(), value=json.dumps(body), on_delivery=on_delivery)
        producer.flush(max(1.0, deadline - time.monotonic()))
        if errors or len(written) != count:
            raise SmokeError(f"could not write the trades: {errors[:1] or 'not acknowledged in time'}")
        while outcome.missing > 0 and time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.topic() == dead_letter_topic:
                headers = _text_headers(msg)
                coordinates = (
                    headers.get("dlq.source.topic", ""),
                    int(headers.get("dlq.source.partition") or -1),
                    int(headers.get("dlq.source.offset") or -1),
                )
                if via == "user_trades" and coordinates[0] == source_topic and coordinates[1:] in written:
                    outcome.dead_letters += 1
                continue
            try:
                settlement = TradeSettlement.FromString(payload(msg.value() or b""))
            except ValueError:
                continue
            if via == "user_trades":
                key: tuple[int, int] | str = (settlement.source_partition, settlement.source_offset)
                if settlement.source_topic != source_topic or key not in written:
                    continue
            else:
                if settlement.symbol != symbol:
                    continue
                key = f"{settlement.user}/{settlement.amount}"
            if key in outcome.settled:
                outcome.duplicates += 1
            outcome.settled[key] = settlement
    finally:
        reader.close()
    return outcome


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--bootstrap-servers", default=env.get("KAFKA_BOOTSTRAP_SERVERS"), help="or KAFKA_BOOTSTRAP_SERVERS"
    )
    parser.add_argument("--schema-registry-url", default=env.get("SCHEMA_REGISTRY_URL"), help="or SCHEMA_REGISTRY_URL")
    parser.add_argument(
        "--via", choices=("user_trades", "stocktrade"), default="user_trades", help="where the trades enter"
    )
    parser.add_argument("--count", type=int, default=5, help="trades to write, 1..1000")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every settlement")
    parser.add_argument(
        "--source-topic", default=env.get("USER_TRADES_TOPIC", "user_trades"), help="or USER_TRADES_TOPIC"
    )
    parser.add_argument(
        "--settlements-topic", default=env.get("SETTLEMENTS_TOPIC", "trade-settlements"), help="or SETTLEMENTS_TOPIC"
    )
    parser.add_argument(
        "--dead-letter-topic", default=env.get("DEAD_LETTER_TOPIC", "user_trades-dlq"), help="or DEAD_LETTER_TOPIC"
    )
    args = parser.parse_args(argv)
    if not args.bootstrap_servers or (args.via == "user_trades" and not args.schema_registry_url):
        parser.error("--bootstrap-servers (and for --via user_trades --schema-registry-url) are required")
    if not 1 <= args.count <= 1000:
        parser.error("--count must be 1..1000")
    started = time.monotonic()
    try:
        outcome = run(
            args.bootstrap_servers,
            args.schema_registry_url or "",
            env,
            via=args.via,
            count=args.count,
            timeout_s=args.timeout,
            source_topic=args.source_topic,
            settlements_topic=args.settlements_topic,
            dead_letter_topic=args.dead_letter_topic,
        )
    except SmokeError as exc:
        print(f"smoke_check: {exc}", file=sys.stderr)
        return 2
    took = time.monotonic() - started
    dispositions: dict[str, int] = {}
    for s in outcome.settled.values():
        dispositions[s.disposition] = dispositions.get(s.disposition, 0) + 1
    summary = ", ".join(f"{n} {d}" for d, n in sorted(dispositions.items())) or "none"
    if outcome.missing > 0:
        print(
            f"smoke_check: FAILED after {took:.1f} s: {outcome.missing} of {outcome.expected} trades have no "
            f"settlement (settled: {summary}; dead letters: {outcome.dead_letters}). Is the function running, and "
            "its entry path's ksqlDB statements applied?"
        )
        return 1
    print(
        f"smoke_check: OK in {took:.1f} s: {outcome.expected} trades via {args.via}, settled: {summary}; dead letters: "
        f"{outcome.dead_letters}; duplicates seen: {outcome.duplicates}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
