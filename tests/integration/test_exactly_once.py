"""The exactly-once guarantee, tested the way it breaks: a read_committed reader of the settlement and
dead-letter topics must see each source record once, whatever batches the host hands over and whatever
happens to the processes holding them. Each worker is a real process importing the app
(tests/integration/ledger_worker.py); the broker and registry are the real local stack."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest

import function_app
from localrun.experiments.kafka import header, read_to_end
from settlement.core.deadletter import SOURCE_OFFSET, SOURCE_PARTITION
from settlement.schemas.user_trade_pb2 import UserTrade
from tests.integration.workers import Worker, exactly, ledger, trades
from tests.kafka_helpers import unique_name

pytestmark = pytest.mark.integration


def test_redelivered_and_overlapping_batches_are_booked_once(pipeline, settings, workers) -> None:
    trades(pipeline, 200)
    w = Worker(settings)
    workers.append(w)
    assert w.settle(0, 0, 119) == "ok"
    assert w.settle(0, 0, 119) == "ok"  # the same batch again (a retry after a lost acknowledgement)
    assert w.settle(0, 60, 199) == "ok"  # overlapping: a rebalance hands the partition back from its commit
    w.exit()
    assert ledger(pipeline) == exactly(200)


def test_a_process_killed_after_returning_loses_nothing(pipeline, settings, workers) -> None:
    """The host stored the offsets of a batch whose transaction was still open when its process died: the next
    holder finds the settled position behind the batch it is given, and repairs the range from the source."""
    trades(pipeline, 300)
    slow = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "60000"})
    workers.append(slow)
    assert slow.settle(0, 0, 99) == "ok"
    assert slow.settle(0, 100, 199) == "ok"  # both left in the open transaction
    slow.kill()
    slow.proc.wait()
    assert ledger(pipeline) == Counter()  # the ledger holds only its starting position
    nxt = Worker(settings)
    workers.append(nxt)
    assert nxt.settle(0, 200, 299) == "ok"
    nxt.exit()
    assert ledger(pipeline) == exactly(300)


def test_a_frozen_instance_thawed_after_another_took_over_books_nothing_twice(pipeline, settings, workers) -> None:
    trades(pipeline, 300)
    zombie = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "60000"})
    workers.append(zombie)
    assert zombie.settle(0, 0, 99) == "ok"
    assert zombie.settle(0, 100, 199) == "ok"  # open when it freezes
    zombie.kill(signal.SIGSTOP)
    try:
        owner = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "0"})
        workers.append(owner)
        assert owner.settle(0, 150, 249) == "ok"  # fences the zombie, repairs 100..149
    finally:
        zombie.kill(signal.SIGCONT)
    assert zombie.settle(0, 150, 299) == "ok"  # what its subscriber had prefetched, then more
    assert owner.settle(0, 250, 299) == "ok"
    zombie.exit()
    owner.exit()
    assert ledger(pipeline) == exactly(300)
    # A read_uncommitted reader also sees the aborted attempts: the zombie's open 100..199 among them.
    assert ledger(pipeline, "read_uncommitted")[(0, 120)] >= 2


def test_two_processes_settling_one_partition_at_once_book_each_trade_once(pipeline, settings, workers) -> None:
    trades(pipeline, 400)
    a, b = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "0"}), Worker(settings)
    workers.extend([a, b])
    ranges_a = [(0, 99), (50, 199), (150, 299), (250, 399)]
    ranges_b = [(0, 149), (100, 249), (200, 349), (300, 399)]
    for (fa, la), (fb, lb) in zip(ranges_a, ranges_b, strict=True):
        a.send(f"settle 0 {fa} {la}")
        b.send(f"settle 0 {fb} {lb}")
        answers = [a.answer(), b.answer()]
        assert all(x == "ok" or x.startswith("error DeliveryError") for x in answers), answers
    # Whatever each one's last batch left open or aborted, a last pass by one of them settles what is missing.
    assert a.settle(0, 399, 399) == "ok"
    a.exit()
    b.exit()
    assert ledger(pipeline) == exactly(400)


def test_both_entry_paths_share_theledger(pipeline, settings, workers) -> None:
    """The same records through the Kafka trigger and the sink connector's HTTP path settle once."""
    from settlement.runtime import sink

    trades(pipeline, 50)
    w = Worker(settings)
    workers.append(w)
    assert w.settle(0, 0, 49) == "ok"
    w.exit()
    raw = read_to_end(pipeline.bootstrap, pipeline.source)
    import base64

    body = json.dumps(
        [
            {
                "key": (m.key() or b"").decode(),
                "value": base64.b64encode(m.value() or b"").decode(),
                "topic": m.topic(),
                "partition": m.partition(),
                "offset": m.offset(),
                "timestamp": m.timestamp()[1],
            }
            for m in raw
        ]
    ).encode()
    function_app.root.reset()
    os.environ["SETTLEMENT_DELIVERY_GUARANTEE"] = "exactly-once"  # restored by the pipeline's monkeypatch
    services = function_app.root.services()
    status, first = sink.handle(body, services.processor, services.http_limits)
    status2, second = sink.handle(body, services.processor, services.http_limits)  # the connector re-posts a body
    assert (status, status2) == (200, 200) and first == second and len(first) == 50
    assert Counter(r["outcome"] for r in first) == {"settled": 49, "dead-lettered": 1}
    function_app.root.reset()
    assert ledger(pipeline) == exactly(50)


def test_a_transactional_source_with_markers_settles_once_without_repair(pipeline, settings, workers, caplog) -> None:
    """ksqlDB under exactly_once_v2 writes user_trades in transactions: offsets carry commit markers and aborted
    records that the host never delivers. Those gaps are not lost records."""
    from confluent_kafka import Producer

    ser, ctx = pipeline.serializer()
    txn = Producer({"bootstrap.servers": pipeline.bootstrap, "transactional.id": unique_name("ksql-like")})
    txn.init_transactions(30)
    for chunk in range(6):
        txn.begin_transaction()
        for i in range(10):
            trade = UserTrade(regionid="R", quantity=1 + i, symbol="ZVV", price=3, account="A")
            txn.produce(pipeline.source, key=f"User_{i}", value=ser(trade, ctx), partition=0)
        if chunk == 2:
            txn.abort_transaction(30)  # never delivered to a read_committed consumer
        else:
            txn.commit_transaction(30)
    visible = [m.offset() for m in read_to_end(pipeline.bootstrap, pipeline.source)]
    assert len(visible) == 50 and visible[-1] > 50  # markers and the aborted chunk take offsets
    w = Worker(settings)
    workers.append(w)
    for lo, hi in [(visible[0], visible[19]), (visible[20], visible[49])]:
        assert w.settle(0, lo, hi) == "ok"
    w.exit()
    assert ledger(pipeline) == Counter({(0, o): 1 for o in visible})


def test_dead_letters_stay_on_the_source_partition_when_the_topics_align(pipeline, settings, workers) -> None:
    """A dead-letter topic with as many partitions as the source gets each dead letter on its source's partition,
    so a transaction a dead instance left open holds back readers of one dead-letter partition, not all."""
    from tests.kafka_helpers import create_topics

    dlq = unique_name("dlq-aligned")
    create_topics(pipeline.bootstrap, [dlq], partitions=3)
    trades(pipeline, 20, partition=2)  # offset 5 is poison
    w = Worker(settings | {"DEAD_LETTER_TOPIC": dlq})
    workers.append(w)
    assert w.settle(2, 0, 19) == "ok"
    w.exit()
    dead = read_to_end(pipeline.bootstrap, dlq)
    assert [(m.partition(), header(m, SOURCE_PARTITION), header(m, SOURCE_OFFSET)) for m in dead] == [(2, "2", "5")]
