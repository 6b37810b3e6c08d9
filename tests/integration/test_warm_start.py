"""The warm start: right after the worker imports the app, a background thread builds the clients and
resolves both schemas, so the first batch finds them ready; a bad setting is still reported by the first
invocation, naming the setting."""

from __future__ import annotations

import pytest

import function_app
from settlement.core.errors import ConfigError
from settlement.schemas.user_trade_pb2 import UserTrade
from settlement.serde.framing import frame_header
from tests.integration.pipeline import Pipeline, as_events
from tests.kafka_helpers import drain, produce

pytestmark = pytest.mark.integration

TRADE = UserTrade(regionid="Region_1", quantity=10, symbol="ZVV", price=5, account="A1", side="BUY")


def test_warm_start_resolves_the_source_schema_before_the_first_batch(pipeline: Pipeline) -> None:
    ser, ctx = pipeline.serializer()  # registers the user_trades schema as ksqlDB does (text)
    value = ser(TRADE, ctx)
    produce(pipeline.bootstrap, pipeline.source, [("User_1", value)])

    function_app.root.warm_start(pipeline.source).join(timeout=30)

    proc = function_app.root.services().processor
    assert value[:6] == frame_header(int.from_bytes(value[1:5], "big"))
    assert value[:6] in proc.decoder._by_framing  # checked against UserTrade before any record came
    # The first batch then settles without resolving anything: the registry may be gone by now.
    proc.decoder._client = None  # type: ignore[assignment]
    function_app.settle_user_trades(as_events(drain(pipeline.bootstrap, pipeline.source, 1)))
    assert len(drain(pipeline.bootstrap, pipeline.settlements, 1)) == 1


def test_a_bad_setting_stops_the_warm_start_and_fails_the_first_invocation(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SETTLEMENT_SEC_SAMPLE_RATE", "lots")
    function_app.root.warm_start(pipeline.source).join(timeout=30)  # nothing raised in the thread, nothing built
    assert function_app.root.current() is None
    with pytest.raises(ConfigError, match="SETTLEMENT_SEC_SAMPLE_RATE"):
        function_app.settle_user_trades([])


def test_an_unknown_subject_leaves_resolution_to_the_records(pipeline: Pipeline) -> None:
    function_app.root.warm_start(pipeline.source).join(timeout=30)  # nothing registered for the source yet
    services = function_app.root.current()
    assert services is not None
    assert not services.processor.decoder._by_framing
