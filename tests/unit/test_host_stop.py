"""Stopping process instances must not lose their last batch reports: a process whose report queue holds more
than its pipe takes does not exit until the parent reads them, so a join that does not read blocks until the
timeout, and the reports die with the killed process (the main job's check then finds duplicates it cannot
explain by any redelivery)."""

from __future__ import annotations

import time
from typing import Any

from localrun.platform.host import KafkaHostOptions, LocalHost, _Running, load_binding, local_settings

REPORTS = 5000  # a few hundred KB pickled: far more than a pipe's buffer


def _report(i: int) -> dict[str, Any]:
    return {
        "instance": "flood",
        "pid": 1,
        "records": 64,
        "invocations": 1,
        "succeeded": True,
        "skipped": False,
        "stored": True,
        "aborted": False,
        "channel_wait_s": 0.0,
        "busy_s": 0.001,
        "ranges": [(0, 64 * i, 64 * i + 63)],
    }


def _flood(events: Any, stop: Any) -> None:
    """Stands for an instance that ran many batches just before it was told to stop."""
    for i in range(REPORTS):
        events.put(_report(i))
    stop.wait(10)


def test_stop_reads_reports_while_instances_exit() -> None:
    import function_app

    settings = {**local_settings(), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "USER_TRADES_TOPIC": "t"}
    reports: list[Any] = []
    binding = load_binding(function_app.app, settings)
    host = LocalHost(binding, KafkaHostOptions(), 1, app="function_app:app", observers=[reports.append])
    stop = host._ctx.Event()
    process = host._ctx.Process(target=_flood, args=(host._events, stop), name="flood")
    process.start()
    host.instances.append(_Running("flood", process, stop))
    started = time.monotonic()
    host.stop()
    assert time.monotonic() - started < 10, "stop waited for the join timeout"
    assert not process.is_alive() and process.exitcode == 0, "the instance had to be killed"
    assert host.stats.batches == REPORTS == len(reports)  # counted by the host, and each passed to its observers
    assert reports[-1]["ranges"] == [(0, 64 * (REPORTS - 1), 64 * REPORTS - 1)]


def _crash() -> None:
    """Stands for an instance whose native code crashed (librdkafka's SIGSEGV): no Python traceback, no report."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def test_an_instance_that_dies_by_itself_is_logged_once(caplog) -> None:  # type: ignore[no-untyped-def]
    import function_app

    settings = {**local_settings(), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "USER_TRADES_TOPIC": "t"}
    host = LocalHost(load_binding(function_app.app, settings), KafkaHostOptions(), 1, app="function_app:app")
    stop = host._ctx.Event()
    process = host._ctx.Process(target=_crash, name="instance-1")
    process.start()
    process.join(30)
    host.instances.append(_Running("instance-1", process, stop))
    with caplog.at_level("ERROR", logger="localrun.host"):
        assert not host.run_until(lambda: False, timeout_s=0.3, autoscale=False, tick_s=0.05)
    deaths = [r.getMessage() for r in caplog.records if "exited by itself" in r.getMessage()]
    assert deaths == [f"instance-1 (pid {process.pid}) exited by itself, exit code -11 (SIGSEGV)"], deaths
    host.stop()
