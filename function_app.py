"""Azure Functions app (Python v2 model): wiring only. The settlement logic lives in `settlement/`.

Every connection detail is an app setting (`%NAME%` is resolved by the host); see README "Settings".
Parameter annotations use `typing.List`: the Python worker validates them with the azure-functions
library's converters when it indexes the app, and the builtin `list[...]` is refused there.

`root` is the process's composition root (settlement/runtime/root.py), the one piece of state that outlives an
invocation. It lives here because the platform puts it here: the worker imports this module once per process and
calls its module-level functions for every invocation, so the clients, the producer and the ledger can only be kept
by a module global, and this module is the one the platform imports. Each function hands `root` to its adapter.
"""

import os
import typing

import azure.functions as func

from settlement.runtime import (
    RETRY_MAXIMUM_S,
    RETRY_MINIMUM_S,
    Root,
    check_invariants,
    interval,
    load_trigger_settings,
    repair_on_timer,
    settle_http_request,
    settle_kafka_events,
    trigger_auth,
)

app = func.FunctionApp()
# Read while the host indexes the app; a bad value raises ConfigError naming the setting.
trigger = load_trigger_settings(os.environ)
# Retries, the batch deadline and the commit interval against host.json's bounds (settlement/runtime/limits.py).
check_invariants(os.environ, trigger)
# The process's services, built once from the app settings on first use.
root = Root(os.environ)
# Clients and schemas resolved in the background while the host joins the consumer group.
warming = root.warm_start(os.environ.get("USER_TRADES_TOPIC")) if trigger.warm_start else None


@app.function_name("settle_user_trades")
@app.kafka_trigger(
    arg_name="events",
    topic="%USER_TRADES_TOPIC%",
    broker_list="%KAFKA_BOOTSTRAP_SERVERS%",
    consumer_group="%KAFKA_CONSUMER_GROUP%",
    protocol=trigger.protocol,
    **trigger_auth(trigger),  # the mode, and its credentials as %SETTING% names (never values)
    cardinality="MANY",
    data_type="binary",
    lag_threshold=trigger.lag_threshold,
)
@app.retry(
    strategy="exponential_backoff",
    max_retry_count=str(trigger.max_retries),
    minimum_interval=interval(RETRY_MINIMUM_S),
    maximum_interval=interval(RETRY_MAXIMUM_S),
)
def settle_user_trades(events: typing.List[func.KafkaEvent]) -> None:  # noqa: UP006 - the worker needs typing.List
    settle_kafka_events(root, events)


@app.function_name("settle_sink_batch")
@app.route(route="settle", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def settle_sink_batch(req: func.HttpRequest) -> func.HttpResponse:
    """Entry for Confluent's Azure Functions Sink Connector (see ksql/03-sink-connector.sql)."""
    return settle_http_request(root, req)


@app.function_name("repair_settlements")
@app.timer_trigger(arg_name="timer", schedule=trigger.repair_schedule, run_on_startup=False, use_monitor=False)
def repair_settlements(timer: func.TimerRequest) -> None:
    """Settle what a dead or stalled instance left behind the trigger's committed offset
    (settlement/delivery/exactly_once/repair.py): on Flex Consumption nothing else runs once the trigger's lag is
    zero."""
    repair_on_timer(root, timer)
