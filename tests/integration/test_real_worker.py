"""The app under Azure's own Python 3.13+ worker runtime (`azure-functions-runtime` 1.3.0 from PyPI, unmodified),
against the real broker and registry.

The worker process is laid out as on Azure (localrun/platform/worker_env.py): Python 3.13, the worker's directory
with the runtime and the worker's protobuf 5.29, the app's requirements installed as the remote build installs
them, put ahead of the worker's by the proxy's hand-over (localrun/platform/worker_handover.py). The test plays
the host (localrun/platform/worker_host.py): it sends the host's messages and reads the runtime's answers. What
the runtime does in between (index the app at init, register bindings, convert each input with the
`azure-functions` converters, run the function in its thread pool, build the response) is the runtime's own code.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from confluent_kafka import TopicPartition

from localrun.experiments.kafka import fresh_consumer
from localrun.platform import worker_env
from localrun.platform.indexing import index_app
from localrun.platform.invocation import HostRecord
from settlement.runtime.config import SETTINGS
from settlement.runtime.limits import RETRY_MAXIMUM_S, RETRY_MINIMUM_S
from settlement.schemas.user_trade_pb2 import UserTrade
from tests.integration.pipeline import SECRET, Pipeline
from tests.integration.test_repair import _host_commits
from tests.integration.test_sink_http import trade
from tests.integration.workers import Worker, exactly, ledger, trades
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration
VISIBLE_S = 30.0  # a settled batch is committed within the commit interval; generous for a shared machine


@pytest.fixture(scope="session")
def env() -> worker_env.WorkerEnv:
    try:
        return worker_env.ensure()
    except worker_env.WorkerEnvError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the real-worker environment: {exc}")
        pytest.skip(f"the real-worker environment: {exc}")


@pytest.fixture
def start(env: worker_env.WorkerEnv) -> Iterator[object]:
    """Start worker processes with given app settings; each is stopped at the end of the test."""
    from localrun.platform.worker_host import RealWorker

    started: list[RealWorker] = []

    def make(settings: dict[str, str]) -> RealWorker:
        app_settings = {k: v for k, v in settings.items() if k != "PYTHONPATH"}
        worker = RealWorker(env, app_settings | {"SETTLEMENT_WARM_START": "true"})
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.close()


def _ready(start, settings: dict[str, str]):  # type: ignore[no-untyped-def]
    """A worker initialised, its functions listed by the runtime and each loaded, as the host does at start."""
    from localrun.platform.worker_host import functions_by_name

    worker = start(settings)
    init = worker.init()
    assert init.ok, init.error + "\n" + worker.stderr_tail()
    functions = functions_by_name(worker.metadata())
    for function in functions.values():
        loaded = worker.load(function)
        assert loaded.ok, loaded.error
    return worker, functions, init


def _read(pipeline: Pipeline, partition: int, count: int) -> list[HostRecord]:
    """The records the extension's consumer would hand over, read off the real broker."""
    c = fresh_consumer(pipeline.bootstrap, "host")
    c.assign([TopicPartition(pipeline.source, partition, 0)])
    got = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < count and time.monotonic() < deadline:
            got.extend(HostRecord.of(m) for m in c.consume(500, timeout=0.5) if m.error() is None)
    finally:
        c.close()
    assert len(got) == count
    return got


def _settles_to(pipeline: Pipeline, expected: Counter[tuple[int, int]]) -> Counter[tuple[int, int]]:
    deadline = time.monotonic() + VISIBLE_S
    while (seen := ledger(pipeline)) != expected and time.monotonic() < deadline:
        time.sleep(0.3)
    return seen


def test_the_runtime_indexes_all_three_functions_with_the_bindings_azure_registers(pipeline, settings, start):
    _, functions, init = _ready(start, settings)
    indexed = [json.loads(log.message) for log in init.logs if log.message.startswith("{")]
    assert any(entry.get("function_count") == 3 for entry in indexed), [log.message for log in init.logs]
    assert set(functions) == {"settle_user_trades", "settle_sink_batch", "repair_settlements"}

    kafka = functions["settle_user_trades"]
    [trigger] = [json.loads(b) for b in kafka.raw_bindings]
    assert trigger == trigger | {
        "type": "kafkaTrigger", "direction": "IN", "name": "events", "cardinality": "MANY", "dataType": "BINARY",
        "topic": "%USER_TRADES_TOPIC%", "brokerList": "%KAFKA_BOOTSTRAP_SERVERS%",
        "consumerGroup": "%KAFKA_CONSUMER_GROUP%", "username": "%KAFKA_SASL_USERNAME%",
        "password": "%KAFKA_SASL_PASSWORD%", "lagThreshold": SETTINGS["KAFKA_LAG_THRESHOLD"].default,
    }, trigger  # fmt: skip
    assert kafka.bindings["events"].data_type == kafka.bindings["events"].binary
    retry = kafka.retry_options
    assert retry.retry_strategy == retry.exponential_backoff
    assert retry.max_retry_count == SETTINGS["SETTLEMENT_MAX_RETRIES"].default
    assert (retry.minimum_interval.seconds, retry.maximum_interval.seconds) == (RETRY_MINIMUM_S, RETRY_MAXIMUM_S)

    http = [json.loads(b) for b in functions["settle_sink_batch"].raw_bindings]
    assert http == [
        {"type": "httpTrigger", "direction": "IN", "name": "req", "methods": ["POST"], "authLevel": "FUNCTION",
         "route": "settle"},
        {"type": "http", "direction": "OUT", "name": "$return"},
    ]  # fmt: skip
    [timer] = [json.loads(b) for b in functions["repair_settlements"].raw_bindings]
    assert timer == {
        "type": "timerTrigger", "direction": "IN", "name": "timer",
        "schedule": SETTINGS["SETTLEMENT_REPAIR_SCHEDULE"].default, "runOnStartup": False, "useMonitor": False,
    }  # fmt: skip
    assert not functions["repair_settlements"].HasField("retry_options")

    # Our model of the worker's indexing (localrun/platform/indexing.py) registers the same bindings.
    import function_app

    model = {f.name: f.bindings for f in index_app(function_app.app)}
    assert model == {name: [json.loads(b) for b in f.raw_bindings] for name, f in functions.items()}


def test_a_kafka_batch_in_the_extensions_shape_settles_each_record_once_and_again_books_nothing(
    pipeline, settings, start
):
    trades(pipeline, 300)  # offset 5 is poison: a dead letter is part of the ledger
    batch = _read(pipeline, 0, 300)
    worker, functions, _ = _ready(start, settings)
    body, metadata = worker.kafka_batch(batch)
    assert body.WhichOneof("data") == "collection_bytes" and metadata["OffsetArray"].WhichOneof("data") == (
        "collection_sint64"
    )
    first = worker.invoke(functions["settle_user_trades"], {"events": body}, metadata, max_retry_count=4)
    assert first.ok, first.error + "\n" + worker.stderr_tail()
    assert _settles_to(pipeline, exactly(300)) == exactly(300)

    # The host delivers the same batch again (a rebalance, a retry): nothing is booked twice.
    again = worker.invoke(functions["settle_user_trades"], {"events": body}, metadata, retry_count=1)
    assert again.ok, again.error
    time.sleep(1.0)
    assert ledger(pipeline) == exactly(300)


def test_the_http_function_answers_a_sink_connector_post(pipeline, settings, start):
    ser, ctx = pipeline.serializer()
    stored = [UserTrade(regionid="Region_1", quantity=10, symbol="ZVV", price=20, account="A1", side="BUY")] * 3
    produce(pipeline.bootstrap, pipeline.source, [(f"User_{i}", ser(t, ctx)) for i, t in enumerate(stored)], 2)
    posted = [
        {"key": f"User_{i}", "value": trade(), "topic": pipeline.source, "partition": 2, "offset": i,
         "timestamp": r.timestamp_ms}
        for i, r in enumerate(_read(pipeline, 2, 3))
    ]  # fmt: skip
    worker, functions, _ = _ready(start, settings)
    request = worker.http_request(
        "POST",
        "https://app.azurewebsites.net/api/settle?code=function-key",
        {"Content-Type": "application/json", "x-functions-key": ""},
        json.dumps(posted).encode(),
    )
    reply = worker.invoke(functions["settle_sink_batch"], {"req": request})
    assert reply.ok, reply.error
    http = reply.message.return_value.http
    assert http.status_code == "200", http
    body = http.body.bytes or http.body.string.encode()
    results = json.loads(body)
    assert [(r["coordinates"], r["outcome"]) for r in results] == [
        (f"{pipeline.source}/2/{i}", "settled") for i in range(3)
    ]
    assert _settles_to(pipeline, exactly(3, partition=2)) == exactly(3, partition=2)


def test_the_timer_invocation_repairs_a_range_a_killed_instance_left_behind(pipeline, settings, start, workers):
    trades(pipeline, 200)
    holder = Worker(settings | {"SETTLEMENT_COMMIT_INTERVAL_MS": "60000"})  # an instance process of the app
    workers.append(holder)
    assert holder.settle(0, 0, 99) == "ok"
    assert holder.settle(0, 100, 199) == "ok"  # both in the open transaction when it dies
    _host_commits(pipeline, settings, 200)
    holder.kill()
    holder.proc.wait()
    assert ledger(pipeline) == Counter()

    worker, functions, _ = _ready(start, settings)  # the instance the timer wakes
    reply = worker.invoke(functions["repair_settlements"], {"timer": worker.timer(past_due=False)})
    assert reply.ok, reply.error
    assert _settles_to(pipeline, exactly(200)) == exactly(200)


def test_a_bad_setting_fails_the_workers_init_naming_it(pipeline, settings, start):
    worker = start(settings | {"KAFKA_LAG_THRESHOLD": "lots"})
    init = worker.init()
    assert not init.ok
    assert "KAFKA_LAG_THRESHOLD" in init.error, init.error
    assert SECRET not in init.error and all(SECRET not in log.message for log in init.logs)


@pytest.mark.parametrize(
    ("annotation", "indexed"), [("typing.List[func.KafkaEvent]", True), ("list[func.KafkaEvent]", False)]
)
def test_the_runtime_refuses_a_builtin_list_annotation_at_init(env, tmp_path, annotation: str, indexed: bool) -> None:
    """Why function_app.py writes `typing.List`: the runtime's indexing refuses the builtin `list[...]` on 3.13 too,
    and the app never starts (our model, localrun/platform/indexing.py, refuses it as well: tests/unit)."""
    from dataclasses import replace

    from localrun.platform.worker_host import RealWorker

    (tmp_path / "function_app.py").write_text(
        "import typing\n\nimport azure.functions as func\n\napp = func.FunctionApp()\n\n\n"
        '@app.kafka_trigger(arg_name="events", topic="t", broker_list="b", consumer_group="g", cardinality="MANY",'
        ' data_type="binary")\n'
        f"def settle(events: {annotation}) -> None:\n    pass\n"
    )
    worker = RealWorker(replace(env, app_dir=tmp_path), {})
    try:
        init = worker.init()
    finally:
        worker.close()
    assert init.ok is indexed, init.error
    if not indexed:
        assert init.error == (
            "FunctionLoadError: cannot load the settle function: binding events has invalid non-type annotation "
            "list[azure.functions.kafka.KafkaEvent]"
        )


def test_the_app_imports_its_own_packages_and_the_runtime_the_workers(env, tmp_path) -> None:
    """The hand-over's order, seen from inside a function: the app's protobuf 7.x and azure-functions from
    .python_packages, the runtime from the worker's directory (whose protobuf 5.29 built the message classes the
    runtime answers with), on the worker's event loop."""
    from dataclasses import replace

    from localrun.platform.worker_host import RealWorker, functions_by_name

    (tmp_path / "function_app.py").write_text(
        "import asyncio, json, sys\n\nimport azure.functions as func\nimport google.protobuf\n\n"
        "app = func.FunctionApp()\n\n\n"
        '@app.route(route="where", auth_level=func.AuthLevel.ANONYMOUS)\n'
        "def where(req: func.HttpRequest) -> func.HttpResponse:\n"
        "    import azure_functions_runtime\n\n"
        "    return func.HttpResponse(json.dumps({\n"
        '        "protobuf": google.protobuf.__version__, "protobuf_at": google.protobuf.__file__,\n'
        '        "functions_at": func.__file__, "runtime_at": azure_functions_runtime.__file__,\n'
        '        "loop": type(asyncio.get_event_loop_policy()).__module__, "path": sys.path}))\n'
    )
    worker = RealWorker(replace(env, app_dir=tmp_path), {})
    try:
        assert worker.init().ok
        function = functions_by_name(worker.metadata())["where"]
        assert worker.load(function).ok
        reply = worker.invoke(function, {"req": worker.http_request("GET", "http://localhost/api/where", {}, b"")})
    finally:
        worker.close()
    assert reply.ok, reply.error
    seen = json.loads(reply.message.return_value.http.body.bytes)
    assert seen["protobuf"].split(".")[0] == "7" and seen["protobuf_at"].startswith(str(env.app_packages))
    assert seen["functions_at"].startswith(str(env.app_packages))
    assert seen["runtime_at"].startswith(str(env.worker_dir))
    assert seen["loop"] == "uvloop"
    assert seen["path"][:2] == [str(env.app_packages), str(env.worker_dir)] and seen["path"][-1] == str(tmp_path)


def _runtime_and_model_accept(env, tmp_path, body: str) -> tuple[bool, bool]:  # type: ignore[no-untyped-def]
    """Whether the runtime's init and our model of the worker's indexing (localrun/platform/indexing.py, which the
    local host and its instance processes run on) accept an app of one function."""
    from dataclasses import replace

    from localrun.platform.indexing import FunctionLoadError
    from localrun.platform.worker_host import RealWorker

    source = "import typing\n\nimport azure.functions as func\n\napp = func.FunctionApp()\n\n\n" + body
    (tmp_path / "function_app.py").write_text(source)
    worker = RealWorker(replace(env, app_dir=tmp_path), {})
    try:
        runtime_accepts = worker.init().ok
    finally:
        worker.close()
    namespace: dict[str, object] = {}
    exec(compile(source, "function_app.py", "exec"), namespace)  # noqa: S102 - the app written just above
    try:
        index_app(namespace["app"])
    except FunctionLoadError:
        return runtime_accepts, False
    return runtime_accepts, True


HTTP = '@app.route(route="r", auth_level=func.AuthLevel.ANONYMOUS)\n'
MANY = (
    '@app.kafka_trigger(arg_name="events", topic="t", broker_list="b", consumer_group="g", cardinality="MANY",'
    ' data_type="binary")\n'
)
ONE = '@app.kafka_trigger(arg_name="event", topic="t", broker_list="b", consumer_group="g", data_type="binary")\n'
TIMER = '@app.timer_trigger(arg_name="t", schedule="*/10 * * * * *")\n'


@pytest.mark.parametrize(
    "body",
    [
        HTTP + "def f(req: func.HttpRequest) -> int:\n    return 1\n",
        HTTP + "def f(req: func.HttpRequest) -> str:\n    return ''\n",
        HTTP + "def f(req):\n    return None\n",
        HTTP + "def f(req: func.HttpRequest, other: str) -> func.HttpResponse:\n    return func.HttpResponse('')\n",
        HTTP + "def f(req: func.HttpRequest, context: func.Context) -> str:\n    return ''\n",
        MANY + "def f(events: func.KafkaEvent) -> None:\n    pass\n",
        MANY + "def f(events: typing.List[str]) -> None:\n    pass\n",
        MANY + "def f(events: bytes) -> None:\n    pass\n",
        MANY + "def f(events: typing.Optional[typing.List[func.KafkaEvent]]) -> None:\n    pass\n",
        ONE + "def f(event: func.KafkaEvent) -> None:\n    pass\n",
        ONE + "def f(event: str) -> None:\n    pass\n",
        TIMER + "def f(t: str) -> None:\n    pass\n",
        TIMER + "def f(t: func.TimerRequest) -> str:\n    return ''\n",
    ]
    + [
        # @app.retry intervals: the runtime reads them with time.strptime("%H:%M:%S")
        HTTP + f'@app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="{delay}")\n'
        "def f(req: func.HttpRequest) -> func.HttpResponse:\n    return func.HttpResponse('')\n"
        for delay in ("00:00:05", "00:01:30", "23:59:59", "00:00:05.5", "24:00:00", "1.00:00:00")
    ],
)
def test_our_model_of_the_workers_indexing_accepts_exactly_what_the_runtime_accepts(env, tmp_path, body) -> None:
    runtime_accepts, model_accepts = _runtime_and_model_accept(env, tmp_path, body)
    assert model_accepts == runtime_accepts, (body, runtime_accepts)
