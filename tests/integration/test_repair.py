"""The repair timer (settlement/delivery/exactly_once/repair.py), tested the way the liveness gap opens: a process
settles batches, the host commits the trigger group past them, and the process dies or freezes with the transaction
open, and no further trade arrives. Each worker is a real process importing the app
(tests/integration/ledger_worker.py); the host's commit is made here with the trigger group's own id, as the
extension's consumer makes it."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition

from devstack import stack as devstack
from tests.conftest import OWNED
from tests.integration.pipeline import Pipeline
from tests.integration.workers import Worker, exactly, ledger, trades, worker_settings

pytestmark = pytest.mark.integration
BOUND_S = 60.0  # every trade visible to a read_committed reader within this, at the default schedule


def _host_commits(pipeline: Pipeline, settings: dict[str, str], offset: int, partition: int = 0) -> None:
    """What the host does after a batch returned: the trigger group's offset committed past it."""
    c = Consumer({"bootstrap.servers": pipeline.bootstrap, "group.id": settings["KAFKA_CONSUMER_GROUP"]})
    try:
        c.commit(offsets=[TopicPartition(pipeline.source, partition, offset)], asynchronous=False)
    finally:
        c.close()


def _repair(worker: Worker) -> dict[int, dict[str, object]]:
    worker.send("repair")
    answer = worker.answer()
    assert answer.startswith("["), answer
    return {int(p["partition"]): p for p in json.loads(answer)}


def _visible_within(pipeline: Pipeline, expected: Counter[tuple[int, int]], timeout_s: float) -> float | None:
    """Seconds until a read_committed reader sees exactly `expected` (None if not within `timeout_s`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if ledger(pipeline) == expected:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def test_a_partition_left_behind_by_a_killed_instance_is_settled_with_no_new_trade(pipeline, settings, workers):
    trades(pipeline, 300)
    holder = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "60000"})
    workers.append(holder)
    assert holder.settle(0, 0, 99) == "ok"
    assert holder.settle(0, 100, 199) == "ok"  # both in the open transaction when it dies
    _host_commits(pipeline, settings, 200)
    holder.kill()
    holder.proc.wait()
    killed = time.monotonic()
    assert ledger(pipeline) == Counter()

    repairer = Worker(settings)  # a new instance woken by the timer: it has seen nothing before
    workers.append(repairer)
    first = _repair(repairer)
    assert first[0]["action"] == "repair" and first[0]["settled"] == 200 and first[0]["lag"] == 200, first
    # Partitions the ledger never began are the trigger's to pin with their first batch.
    assert {first[p]["action"] for p in (1, 2)} == {"unknown"}, first
    assert ledger(pipeline) == exactly(200)  # records the host did not move past are the trigger's to deliver
    assert time.monotonic() - killed < BOUND_S
    again = _repair(repairer)
    assert again[0]["settled"] == 0 and again[0]["lag"] == 0, again  # nothing settled twice
    assert repairer.settle(0, 200, 299) == "ok"  # the trigger delivers the rest
    repairer.exit()
    assert ledger(pipeline) == exactly(300)


def test_a_frozen_holder_is_fenced_and_thaws_without_booking_twice(pipeline, settings, workers):
    trades(pipeline, 300)
    zombie = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "60000"})
    workers.append(zombie)
    assert zombie.settle(0, 0, 149) == "ok"
    _host_commits(pipeline, settings, 150)
    zombie.kill(signal.SIGSTOP)
    try:
        repairer = Worker(settings)
        workers.append(repairer)
        assert _repair(repairer)[0]["settled"] == 150
        assert ledger(pipeline) == exactly(150)
    finally:
        zombie.kill(signal.SIGCONT)
    # The thawed zombie's open transaction was aborted by the repair's fencing; its next batch takes the partition
    # again, reads the settled position and skips what the repair settled.
    assert zombie.settle(0, 100, 299) == "ok"
    zombie.exit()
    repairer.exit()
    assert ledger(pipeline) == exactly(300)


def test_a_gap_longer_than_one_step_is_finished_by_the_repair(pipeline, settings, workers):
    trades(pipeline, 6_200)
    holder = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "60000"})
    workers.append(holder)
    for first in range(0, 6_200, 1_000):
        assert holder.settle(0, first, min(first + 999, 6_199)) == "ok"
    _host_commits(pipeline, settings, 6_200)
    holder.kill()
    holder.proc.wait()
    repairer = Worker(settings)
    workers.append(repairer)
    assert _repair(repairer)[0]["settled"] == 6_200  # in steps of REPAIR_LIMIT, each committed
    repairer.exit()
    assert ledger(pipeline) == exactly(6_200)


def test_records_the_trigger_holds_without_delivering_are_drained_and_a_late_delivery_skips_them(
    pipeline, settings, workers
):
    """The extension dropped the partition's last batch (a traceparent it refuses, tracing on): the trigger
    committed up to the batch before, its consumer moved on, and no later batch commits past or delivers the
    records again. The holder is alive; nothing moves. The repair settles the waiting records once they stood
    still for two stall periods, and a delivery after a rebalance finds them settled."""
    trades(pipeline, 300)
    holder = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "0"})
    workers.append(holder)
    assert holder.settle(0, 0, 99) == "ok"
    _host_commits(pipeline, settings, 100)
    dropped = time.monotonic()
    repairer = Worker(settings)
    workers.append(repairer)
    first = _repair(repairer)  # a process new to the partition watches it once, then waits for another period
    assert first[0]["action"] == "watch" and first[0]["settled"] == 0, first
    assert ledger(pipeline) == exactly(100)
    deadline = time.monotonic() + BOUND_S
    run = first
    while run[0]["action"] == "watch" and time.monotonic() < deadline:
        time.sleep(1.0)
        run = _repair(repairer)
    assert run[0]["action"] == "drain" and run[0]["settled"] == 200, run
    assert ledger(pipeline) == exactly(300)
    assert time.monotonic() - dropped < BOUND_S
    assert _repair(repairer)[0]["settled"] == 0  # nothing settled twice
    assert holder.settle(0, 100, 299) == "ok"  # the trigger delivers them after all (a rebalance, a restart)
    holder.exit()
    repairer.exit()
    assert ledger(pipeline) == exactly(300)


def test_a_live_holder_is_left_alone(pipeline, settings, workers):
    """A partition whose settled position keeps up with the trigger's offset is idle for the repair, and one
    whose lag was seen only once is watched, not taken."""
    trades(pipeline, 300)
    holder = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "0"})
    workers.append(holder)
    assert holder.settle(0, 0, 99) == "ok"
    _host_commits(pipeline, settings, 100)
    repairer = Worker(settings)
    workers.append(repairer)
    run = _repair(repairer)
    assert run[0]["lag"] == 0 and run[0]["settled"] == 0, run
    assert holder.settle(0, 100, 299) == "ok"
    holder.exit()
    repairer.exit()
    assert ledger(pipeline) == exactly(300)


RESTARTS = 2  # before the fix the first restart crashed the process in each of 4 runs (a run in flight as it came back)


@pytest.mark.xdist_group(OWNED)
def test_repair_runs_across_broker_restarts_leave_their_process_alive(owned_pipeline, workers):
    """Repair runs back to back while the broker restarts meet the group coordinator answering NOT_COORDINATOR
    (while it comes back): a run may fail, its process must live on. Reading the group offsets with the admin
    client's list_consumer_group_offsets, librdkafka (2.16, confluentinc/librdkafka#5040) crashed the process
    with SIGSEGV on that answer: in the Premium model the trigger's instance, which then settled nothing more."""
    pipeline = owned_pipeline
    settings = worker_settings()
    trades(pipeline, 100)
    worker = Worker(settings)
    workers.append(worker)
    assert worker.settle(0, 0, 99) == "ok"
    _host_commits(pipeline, settings, 100)
    _repair(worker)  # its clients built and connected before the first restart
    state = devstack.load_state()
    assert state is not None
    for _ in range(RESTARTS):
        restart = threading.Thread(target=devstack.restart_broker, args=(state,))
        restart.start()
        runs = 0
        after = None
        # Runs back to back until the broker has been back for a while: one is in flight when it comes back.
        while restart.is_alive() or after is None or time.monotonic() - after < 5:
            if after is None and not restart.is_alive():
                after = time.monotonic()
            worker.send("repair")
            answer = worker.answer()
            assert answer.startswith("["), (answer, worker.proc.poll())  # "" and -11: the process died (SIGSEGV)
            runs += 1
        restart.join()
        assert runs > 1
    # The repair works again once the cluster answers (a run that meets a partition without a leader yet leaves it
    # out), and nothing was lost or doubled.
    deadline = time.monotonic() + 30
    while 0 not in (run := _repair(worker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run[0]["action"] == "idle" and run[0]["lag"] == 0, run
    worker.exit()
    assert ledger(pipeline) == exactly(100)
