"""One record's path from `function_app.settle_user_trades` to the producer enters each of our modules at most once
on the way down (docs/architecture.md, "Layers"): no module calls down and is called back by what it called. Traced
with `sys.setprofile` over a real batch against the real broker and registry, under both guarantees, so a callback
added later (a module handing itself to the one below) fails here."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import function_app
from settlement.schemas.user_trade_pb2 import UserTrade
from tests.integration.pipeline import Pipeline, as_events
from tests.kafka_helpers import drain, produce

pytestmark = pytest.mark.integration

OURS = ("settlement", "function_app")


def _module(frame: FrameType) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if name.split(".")[0] in OURS else None


def reentries(call: Callable[[], Any]) -> tuple[set[str], list[list[str]]]:
    """The modules of ours `call` entered, and each call stack (our modules only, consecutive frames of one module
    as one) in which a module appears twice: A → B → A."""
    seen: set[str] = set()
    bad: list[list[str]] = []

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event != "call":
            return
        chain: list[str] = []
        f: FrameType | None = frame
        while f is not None:
            mod = _module(f)
            if mod is not None and (not chain or chain[-1] != mod):
                chain.append(mod)
            f = f.f_back
        seen.update(chain)
        if len(set(chain)) != len(chain) and list(reversed(chain)) not in bad:
            bad.append(list(reversed(chain)))

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return seen, bad


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_record_enters_each_module_once_on_its_way_to_the_producer(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, guarantee: str
) -> None:
    monkeypatch.setenv("SETTLEMENT_DELIVERY_GUARANTEE", guarantee)
    function_app.root.reset()
    ser, ctx = pipeline.serializer()
    trade = UserTrade(regionid="Region_1", quantity=10, symbol="ZVV", price=5, account="A1", side="BUY")
    produce(pipeline.bootstrap, pipeline.source, [(f"User_{i}", ser(trade, ctx)) for i in range(3)], partition=0)
    events = as_events(drain(pipeline.bootstrap, pipeline.source, 3))
    function_app.settle_user_trades(events)  # the first batch builds the process-wide parts; the second is a batch

    produce(pipeline.bootstrap, pipeline.source, [("User_9", ser(trade, ctx))], partition=0)
    later = [e for e in as_events(drain(pipeline.bootstrap, pipeline.source, 4)) if e.offset == 3]
    seen, bad = reentries(lambda: function_app.settle_user_trades(later))

    assert bad == []
    # The trace saw the whole way down, so an empty `bad` means something.
    assert {"function_app", "settlement.runtime.triggers", "settlement.delivery.batch"} <= seen
    assert "settlement.delivery.producer" in seen
    assert ("settlement.delivery.exactly_once.delivery" in seen) == (guarantee == "exactly-once")
