"""The app indexes the way the Azure Functions Python worker indexes it (the library's own converters)."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import azure.functions as func
import pytest

from localrun.platform.indexing import FunctionLoadError, index_app

ROOT = Path(__file__).resolve().parents[2]


def test_every_function_of_the_app_indexes() -> None:
    import function_app

    indexed = {f.name: f for f in index_app(function_app.app)}
    assert set(indexed) == {"settle_user_trades", "settle_sink_batch", "repair_settlements"}
    kafka = indexed["settle_user_trades"]
    assert kafka.inputs["events"].binding_type == "kafkaTrigger"
    assert kafka.binding("kafkaTrigger")["cardinality"] == "MANY"
    assert kafka.binding("kafkaTrigger")["dataType"] == "BINARY"
    assert kafka.retry is not None
    assert (kafka.retry.strategy, kafka.retry.max_retry_count) == ("exponential_backoff", 4)
    assert (kafka.retry.minimum_interval_s, kafka.retry.maximum_interval_s) == (5.0, 60.0)
    http = indexed["settle_sink_batch"]
    assert http.binding("http")["name"] == "$return"
    assert http.inputs["req"].binding_type == "httpTrigger"
    timer = indexed["repair_settlements"]
    assert timer.inputs["timer"].binding_type == "timerTrigger"
    binding = timer.binding("timerTrigger")
    # The schedule is read at indexing (SETTLEMENT_REPAIR_SCHEDULE, default every 10 s) and baked in as NCRONTAB.
    assert (binding["schedule"], binding["runOnStartup"], binding["useMonitor"]) == ("*/10 * * * * *", False, False)


def test_a_bad_repair_schedule_fails_start_up_naming_the_setting() -> None:
    env = {**os.environ, "SETTLEMENT_REPAIR_SCHEDULE": "0 0 0 L * *", "SETTLEMENT_WARM_START": "false"}
    done = subprocess.run(
        [sys.executable, "-c", "import function_app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "SETTLEMENT_REPAIR_SCHEDULE" in done.stderr and "'L' is not NCRONTAB" in done.stderr, done.stderr[-400:]


def _kafka_app(annotation: object) -> func.FunctionApp:
    app = func.FunctionApp()

    def handler(events):  # type: ignore[no-untyped-def]
        return None

    handler.__annotations__ = {"events": annotation, "return": None}
    app.function_name("f")(
        app.kafka_trigger(arg_name="events", topic="t", broker_list="b", cardinality="MANY", data_type="binary")(
            handler
        )
    )
    return app


def test_builtin_list_annotation_is_refused_as_the_worker_refuses_it() -> None:
    with pytest.raises(FunctionLoadError, match="invalid non-type annotation list"):
        index_app(_kafka_app(list[func.KafkaEvent]))
    index_app(_kafka_app(typing.List[func.KafkaEvent]))  # noqa: UP006 - the accepted form


def test_a_mismatched_annotation_is_refused() -> None:
    with pytest.raises(FunctionLoadError, match="do not match"):
        index_app(_kafka_app(typing.List[func.HttpRequest]))  # noqa: UP006


def test_a_bad_return_annotation_is_refused() -> None:
    app = func.FunctionApp()

    @app.route(route="r", auth_level=func.AuthLevel.ANONYMOUS)
    def handler(req: func.HttpRequest) -> int:
        return 1

    with pytest.raises(FunctionLoadError, match='does not match binding type "http"'):
        index_app(app)


def test_an_invalid_retry_policy_is_refused() -> None:
    app = func.FunctionApp()

    @app.retry(strategy="exponential_backoff", max_retry_count="3", minimum_interval="soon", maximum_interval="x")
    @app.route(route="r", auth_level=func.AuthLevel.ANONYMOUS)
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    with pytest.raises(FunctionLoadError, match="invalid retry policy"):
        index_app(app)


# Each as Azure's 3.13+ runtime answered it at init (tests/integration/test_real_worker.py's set-up, runtime 1.3.0).
@pytest.mark.parametrize(
    ("delay", "seconds"),
    [("00:00:05", 5.0), ("00:01:30", 90.0), ("23:59:59", 86_399.0), ("00:00:05.5", None), ("24:00:00", None),
     ("1.00:00:00", None)],
)  # fmt: skip
def test_retry_intervals_are_read_as_the_runtime_reads_them(delay: str, seconds: float | None) -> None:
    app = func.FunctionApp()

    @app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval=delay)
    @app.route(route="r", auth_level=func.AuthLevel.ANONYMOUS)
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    if seconds is None:
        with pytest.raises(FunctionLoadError, match="invalid retry policy"):
            index_app(app)
    else:
        [indexed] = index_app(app)
        assert indexed.retry is not None and indexed.retry.minimum_interval_s == seconds


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("KAFKA_LAG_THRESHOLD", "1k"),
        ("SETTLEMENT_MAX_RETRIES", "five"),
        ("SETTLEMENT_WARM_START", "sometimes"),
        ("KAFKA_TRIGGER_PROTOCOL", "tls"),
        ("KAFKA_TRIGGER_AUTH_MODE", "kerberos-ish"),
        # well-formed, but past a documented bound (settlement/runtime/limits.py): start-up refuses them too
        ("SETTLEMENT_MAX_RETRIES", "7"),
        ("SETTLEMENT_DELIVERY_TIMEOUT_SECONDS", "400"),
    ],
)
def test_a_bad_indexing_time_setting_names_itself(setting: str, value: str) -> None:
    env = {**os.environ, setting: value}
    proc = subprocess.run(
        [sys.executable, "-c", "import function_app"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("settlement.core.errors.ConfigError: " + setting), last


def test_importing_the_app_loads_no_telemetry_or_protoc() -> None:
    lazy = ("opentelemetry", "azure.monitor", "grpc_tools")
    code = f"import sys, function_app; print(sorted(m for m in {lazy!r} if m in sys.modules))"
    env = {**os.environ, "SETTLEMENT_WARM_START": "false"}  # the import alone; a warm start loads them later
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("value", "disabled"),
    [("true", True), ("True", True), (" 1 ", True), ("false", False), ("", False), ("yes", False)],
)
def test_the_kafka_function_disabled_by_its_app_setting_gets_no_listener(value: str, disabled: bool) -> None:
    import function_app
    from localrun.platform.binding import FunctionDisabled, load_binding

    settings = {"USER_TRADES_TOPIC": "t", "KAFKA_CONSUMER_GROUP": "g", "KAFKA_BOOTSTRAP_SERVERS": "b:1"}
    settings["AzureWebJobs.settle_user_trades.Disabled"] = value
    if disabled:
        with pytest.raises(FunctionDisabled, match=r"AzureWebJobs\.settle_user_trades\.Disabled"):
            load_binding(function_app.app, settings)
    else:
        assert load_binding(function_app.app, settings).function_name == "settle_user_trades"
    # the HTTP function's setting does not touch the Kafka trigger
    settings = {
        **settings,
        "AzureWebJobs.settle_user_trades.Disabled": "",
        "AzureWebJobs.settle_sink_batch.Disabled": "true",
    }
    assert load_binding(function_app.app, settings).function_name == "settle_user_trades"
