"""The join and the analysis on the local Flink engine, and their checks against figures computed here
independently: every trade joined with the users row valid at its time, every window equal to the same sums over
the settlements a read_committed reader sees.

The source topics are written as the Datagen quickstarts write them (JSON values, the user id as the users key),
with the trades' times as record timestamps. The statements are flink/'s, run unchanged; the table definitions are
generated for the local engine (streaming/ddl.py) over this run's topics.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from devstack.flink import Engine
from localrun.experiments import ksql_schema
from localrun.experiments.generator import SIDES, SYMBOLS
from localrun.experiments.kafka import create_topics, read_to_end
from settlement.schemas import TradeSettlement, UserTrade
from streaming import ddl, statements

MINUTE_MS, HOUR_MS = 60_000, 3_600_000
BY_SYMBOL = "settlements_by_symbol_disposition"
EXPOSURE = "exposure_by_symbol_hourly"


@dataclass(frozen=True)
class StreamTopics:
    """A run's topics for every table of flink/tables.toml."""

    names: Mapping[str, str]

    @classmethod
    def for_run(cls, run_id: str, user_trades: str, settlements: str) -> StreamTopics:
        tables = ddl.load()
        names = {name: f"{name}-{run_id}" for name in tables}
        names["user_trades"], names["trade-settlements"] = user_trades, settlements
        return cls(names)

    def __getitem__(self, table: str) -> str:
        return self.names[table]


@dataclass(frozen=True)
class SourceConfig:
    """Users 1..users-1 have a row from before the first trade; the last user never has one (the LEFT JOIN's "no
    user"); `moved` changes region `moved_at` of the way through the trades."""

    users: int = 10
    moved: str = "User_3"
    moved_at: float = 0.5
    # Microseconds between consecutive trades (several share a millisecond timestamp): 1,000,000 trades span 100 s,
    # so event time moves about as fast as the run does, as in a live stream. The temporal join emits each user's
    # trades key by key as its watermark moves, out of time order by as much as the watermark jumped; a backlog read
    # at 1 ms a trade made those jumps reach 111 s of event time on this machine, past the analysis's 30 s delay.
    step_us: int = 100
    seed: int = 11

    @property
    def missing(self) -> str:
        return f"User_{self.users}"


@dataclass
class Sources:
    """What was produced: users rows and trades with their record timestamps, for the join's check."""

    users: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (timestamp ms, value)
    trades: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def stock_trades(count: int, start_ms: int, cfg: SourceConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    """(timestamp, value) pairs shaped like the Datagen STOCK_TRADES quickstart, amounts as generator.py draws them."""
    rng = random.Random(cfg.seed)
    for i in range(count):
        large = rng.random() < 0.10
        yield (
            start_ms + i * cfg.step_us // 1000,
            {
                "side": rng.choice(SIDES),
                "quantity": rng.randint(1000, 4999) if large else rng.randint(1, 999),
                "symbol": rng.choice(SYMBOLS),
                "price": rng.randint(101, 999) if large else rng.randint(5, 99),
                "account": f"ABC{rng.randint(100, 999)}",
                "userid": f"User_{rng.randint(1, cfg.users)}",
            },
        )


def produce_sources(
    bootstrap: str,
    topics: StreamTopics,
    count: int,
    start_ms: int,
    cfg: SourceConfig = SourceConfig(),
    rate: float | None = None,
) -> Sources:
    """Write users (JSON, keyed by user id) and `count` trades (JSON) with their timestamps, at `rate` trades/s or
    as fast as possible."""
    sources = Sources()
    for n in range(1, cfg.users):
        sources.users.append(
            (start_ms - MINUTE_MS, {"registertime": start_ms - HOUR_MS, "userid": f"User_{n}",
                                   "regionid": f"Region_{n}", "gender": "OTHER"})
        )  # fmt: skip
    moved_ms = start_ms + int(count * cfg.step_us * cfg.moved_at) // 1000
    sources.users.append(
        (moved_ms, {"registertime": start_ms - HOUR_MS, "userid": cfg.moved, "regionid": "Region_moved",
                    "gender": "OTHER"})
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"})
    for stamp, value in sources.users:
        producer.produce(topics["users"], json.dumps(value).encode(), value["userid"].encode(), timestamp=stamp)
    started = time.monotonic()
    for i, (stamp, value) in enumerate(stock_trades(count, start_ms, cfg)):
        if rate:
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        sources.trades.append((stamp, value))
        while True:
            try:
                producer.produce(topics["stocktrade"], json.dumps(value).encode(), None, timestamp=stamp)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise RuntimeError("the source records were not all acknowledged")
    return sources


def create_stream_topics(bootstrap: str, topics: StreamTopics, partitions: int) -> None:
    """The sources and the analysis outputs; old record timestamps must not meet time retention."""
    own = {topics[name]: partitions for name in ("stocktrade", "users", BY_SYMBOL, EXPOSURE)}
    create_topics(bootstrap, own, {"retention.ms": "-1"})


def register_user_trades(registry_url: str, topic: str, registry_conf: Mapping[str, Any] | None = None) -> int:
    """user_trades' value schema as ksqlDB registers it; the engine frames every value with its id. `registry_conf`
    adds to the client's settings (a keyless run's registry takes tokens)."""
    return ksql_schema.register(SchemaRegistryClient({**(registry_conf or {}), "url": registry_url}), f"{topic}-value")


def definitions(bootstrap: str, topics: StreamTopics, bounded: bool) -> list[str]:
    return ddl.local(ddl.load(), topics.names, bootstrap, bounded=bounded)


def run_file(engine: Engine, file: str, schema_ids: Mapping[str, int], wait: bool, timeout_s: float = 600) -> list[str]:
    """Run a statements file of flink/ unchanged (written through the encoding UDF where the target is framed), its
    INSERTs as one job; returns the job."""
    tables = ddl.load()
    inserts = [ddl.local_insert(tables[i.table], i.query, schema_ids.get(i.table, 0)) for i in statements.inserts(file)]
    if len(inserts) == 1:
        return [str(engine.sql(inserts[0], wait=wait, timeout_s=timeout_s)["job"])]
    return [str(engine.statement_set(inserts, wait=wait, timeout_s=timeout_s)["job"])]


def apply_definitions(engine: Engine, bootstrap: str, topics: StreamTopics, bounded: bool) -> None:
    for statement in definitions(bootstrap, topics, bounded):
        engine.sql(statement)


# --- the checks ------------------------------------------------------------------------------------------------------


def expected_region(users: Sequence[tuple[int, dict[str, Any]]], userid: str, at_ms: int) -> str | None:
    """The users row valid at `at_ms`: the latest one of this user with a timestamp not after it."""
    valid = [(stamp, v) for stamp, v in users if v["userid"] == userid and stamp <= at_ms]
    return max(valid, key=lambda sv: sv[0])[1]["regionid"] if valid else None


@dataclass(frozen=True)
class JoinCheck:
    trades: int
    joined: int
    wrong: list[str]
    missing: int
    extra: int
    no_user: int
    moved: int

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.joined == self.trades


def decode_user_trade(msg: Message) -> UserTrade:
    value = msg.value() or b""
    return UserTrade.FromString(value[6:])


def check_join(sources: Sources, joined: Iterable[Message], cfg: SourceConfig = SourceConfig()) -> JoinCheck:
    """Every trade once in user_trades, with its own columns, keyed by its user, stamped with its time, and the
    region of the users row valid at that time (none for a user without one). Trades are matched as whole rows
    (several may share a millisecond), counted, so a doubled or missing one shows."""
    regions: dict[tuple[str, int], str | None] = {}
    expected: Counter[tuple[Any, ...]] = Counter()
    no_user = moved = 0
    for stamp, trade in sources.trades:
        key = (trade["userid"], stamp)
        if key not in regions:
            regions[key] = expected_region(sources.users, trade["userid"], stamp)
        region = regions[key]
        no_user += region is None
        moved += region == "Region_moved"
        expected[(stamp, trade["userid"], region, trade["quantity"], trade["symbol"], trade["price"],
                  trade["account"], trade["side"])] += 1  # fmt: skip
    actual: Counter[tuple[Any, ...]] = Counter()
    for msg in joined:
        got = decode_user_trade(msg)
        actual[(msg.timestamp()[1], (msg.key() or b"").decode(), got.regionid if got.HasField("regionid") else None,
                got.quantity, got.symbol, got.price, got.account, got.side)] += 1  # fmt: skip
    missing, extra = expected - actual, actual - expected
    wrong = [f"expected, not written: {row}" for row in list(missing)[:3]]
    wrong += [f"written, not expected: {row}" for row in list(extra)[:3]]
    joined_n = sum(actual.values()) - sum(extra.values())
    return JoinCheck(len(sources.trades), joined_n, wrong, sum(missing.values()), sum(extra.values()), no_user, moved)


def window_start(stamp_ms: int, size_ms: int) -> str:
    """The window's start as Flink's JSON format writes a TIMESTAMP(3) in UTC."""
    return _format_start(stamp_ms - stamp_ms % size_ms)


@functools.lru_cache(maxsize=4096)
def _format_start(start_ms: int) -> str:
    return datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def expected_windows(settlements: Iterable[tuple[int, TradeSettlement]]) -> dict[str, dict[tuple[str, ...], dict]]:
    """Both analyses computed here from (record timestamp, settlement) pairs: per 1-minute window, symbol and
    disposition the count and amount; per hour and symbol the pending, flagged and completed amounts, the
    rejected count and the count."""
    by_symbol: dict[tuple[str, ...], dict[str, float]] = defaultdict(lambda: {"TRADES": 0, "AMOUNT": 0.0})
    exposure: dict[tuple[str, ...], dict[str, float]] = defaultdict(
        lambda: {"PENDING_AMOUNT": 0.0, "FLAGGED_AMOUNT": 0.0, "COMPLETED_AMOUNT": 0.0, "REJECTED_TRADES": 0,
                 "TRADES": 0}
    )  # fmt: skip
    column = {"Pending": "PENDING_AMOUNT", "SEC Flagged": "FLAGGED_AMOUNT", "Completed": "COMPLETED_AMOUNT"}
    for stamp, s in settlements:
        row = by_symbol[(window_start(stamp, MINUTE_MS), s.symbol, s.disposition)]
        row["TRADES"] += 1
        row["AMOUNT"] += s.amount
        hour = exposure[(window_start(stamp, HOUR_MS), s.symbol)]
        hour["TRADES"] += 1
        if s.disposition == "Rejected":
            hour["REJECTED_TRADES"] += 1
        elif s.disposition in column:
            hour[column[s.disposition]] += s.amount
    return {BY_SYMBOL: dict(by_symbol), EXPOSURE: dict(exposure)}


def engine_windows(bootstrap: str, topics: StreamTopics) -> dict[str, dict[tuple[str, ...], dict]]:
    """The analysis outputs as the engine wrote them, keyed as `expected_windows` keys them."""
    out: dict[str, dict[tuple[str, ...], dict]] = {}
    for table, keys in ((BY_SYMBOL, ("SYMBOL", "DISPOSITION")), (EXPOSURE, ("SYMBOL",))):
        rows: dict[tuple[str, ...], dict] = {}
        for msg in read_to_end(bootstrap, topics[table]):
            value = json.loads(msg.value() or b"{}")
            key = (value["WINDOW_START"], *(value[k] for k in keys))
            if key in rows:
                raise AssertionError(f"{table}: window {key} emitted twice")
            rows[key] = {k: v for k, v in value.items() if k not in (*keys, "WINDOW_START", "WINDOW_END")}
        out[table] = rows
    return out


@dataclass(frozen=True)
class WindowCheck:
    windows: dict[str, int]
    wrong: list[str]

    @property
    def ok(self) -> bool:
        return not self.wrong


def check_windows(expected: Mapping[str, Mapping[tuple[str, ...], dict]], got: Mapping[str, Mapping]) -> WindowCheck:
    """Every window the same, value for value (amounts are sums of integers: exact in a double), none missing,
    none extra."""
    wrong: list[str] = []
    for table, rows in expected.items():
        engine_rows = got.get(table, {})
        for key in sorted(set(rows) | set(engine_rows)):
            if rows.get(key) != engine_rows.get(key):
                wrong.append(f"{table} {key}: engine {engine_rows.get(key)} != expected {rows.get(key)}")
    return WindowCheck({table: len(rows) for table, rows in got.items()}, wrong[:10])


def settled_pairs(messages: Iterable[Message]) -> list[tuple[int, TradeSettlement]]:
    """(record timestamp, settlement) of settlement records."""
    return [(m.timestamp()[1], TradeSettlement.FromString((m.value() or b"")[6:])) for m in messages]
