"""Azure Functions app (Python v2 model): wiring only. The settlement logic lives in `settlement/`.

Every connection detail is an app setting (`%NAME%` is resolved by the host); see README "Settings".
"""

import os

import azure.functions as func

from settlement.triggers import settle_http_request, settle_kafka_events

app = func.FunctionApp()


@app.function_name("settle_user_trades")
@app.kafka_trigger(
    arg_name="events",
    topic="%USER_TRADES_TOPIC%",
    broker_list="%KAFKA_BOOTSTRAP_SERVERS%",
    consumer_group="%KAFKA_CONSUMER_GROUP%",
    username="%KAFKA_SASL_USERNAME%",
    password="%KAFKA_SASL_PASSWORD%",  # noqa: S106 - the name of an app setting, not a value
    # Enum-valued binding properties cannot be %settings%; they are read when the host indexes the app.
    protocol=os.environ.get("KAFKA_TRIGGER_PROTOCOL", "SaslSsl"),
    authentication_mode=os.environ.get("KAFKA_TRIGGER_AUTH_MODE", "Plain"),
    cardinality="MANY",
    data_type="binary",
    lag_threshold=int(os.environ.get("KAFKA_LAG_THRESHOLD", "1000")),
)
@app.retry(
    strategy="exponential_backoff",
    max_retry_count=os.environ.get("SETTLEMENT_MAX_RETRIES", "5"),
    minimum_interval="00:00:02",
    maximum_interval="00:01:00",
)
def settle_user_trades(events: list[func.KafkaEvent]) -> None:
    settle_kafka_events(events)


@app.function_name("settle_sink_batch")
@app.route(route="settle", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def settle_sink_batch(req: func.HttpRequest) -> func.HttpResponse:
    """Entry for Confluent's Azure Functions Sink Connector (see ksql/03-sink-connector.sql)."""
    return settle_http_request(req)
