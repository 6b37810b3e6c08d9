"""Table test of the settlement rules, including every boundary."""

from __future__ import annotations

import pytest

from settlement.rules import Decision, Disposition, Reason, RulesConfig, Trade, sample_point, settle

CFG = RulesConfig(large_trade_limit=100_000, sec_watchlist=frozenset({"ZWATCH"}), sec_sample_rate=0.0)


def trade(
    user: str | None = "User_1",
    regionid: str | None = "Region_1",
    quantity: int = 10,
    price: int = 100,
    symbol: str = "ZVV",
    identity: str = "user_trades/0/1",
) -> Trade:
    return Trade(user, regionid, quantity, symbol, price, "ACC1", "BUY", identity)


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (trade(), Decision(Disposition.COMPLETED, Reason.WITHIN_LIMIT, 1000.0)),
        (trade(user=None), Decision(Disposition.REJECTED, Reason.NO_USER, 1000.0)),
        (trade(user=""), Decision(Disposition.REJECTED, Reason.NO_USER, 1000.0)),
        (trade(regionid=None), Decision(Disposition.REJECTED, Reason.NO_USER, 1000.0)),
        (trade(regionid=""), Decision(Disposition.REJECTED, Reason.NO_USER, 1000.0)),
        # no user wins over every later rule, as in the reference order
        (
            trade(user=None, quantity=5000, price=5000, symbol="ZWATCH"),
            Decision(Disposition.REJECTED, Reason.NO_USER, 25_000_000.0),
        ),
        (trade(symbol=""), Decision(Disposition.REJECTED, Reason.NO_SYMBOL, 1000.0)),
        (trade(quantity=0), Decision(Disposition.REJECTED, Reason.BAD_QUANTITY, 0.0)),
        (trade(quantity=-1), Decision(Disposition.REJECTED, Reason.BAD_QUANTITY, -100.0)),
        (trade(price=0), Decision(Disposition.REJECTED, Reason.BAD_PRICE, 0.0)),
        # the limit itself is not "large"; one unit over is
        (trade(quantity=1000, price=100), Decision(Disposition.COMPLETED, Reason.WITHIN_LIMIT, 100_000.0)),
        (trade(quantity=1000, price=101), Decision(Disposition.PENDING, Reason.LARGE_TRADE, 101_000.0)),
        (trade(quantity=100_001, price=1), Decision(Disposition.PENDING, Reason.LARGE_TRADE, 100_001.0)),
        # large wins over SEC
        (
            trade(quantity=1000, price=101, symbol="ZWATCH"),
            Decision(Disposition.PENDING, Reason.LARGE_TRADE, 101_000.0),
        ),
        (trade(symbol="ZWATCH"), Decision(Disposition.SEC_FLAGGED, Reason.WATCHLIST, 1000.0)),
        (trade(symbol="zwatch"), Decision(Disposition.COMPLETED, Reason.WITHIN_LIMIT, 1000.0)),
        # int32 extremes do not overflow: amount is computed in floating point
        (
            trade(quantity=2**31 - 1, price=2**31 - 1),
            Decision(Disposition.PENDING, Reason.LARGE_TRADE, float((2**31 - 1) ** 2)),
        ),
    ],
)
def test_rules_table(t: Trade, expected: Decision) -> None:
    assert settle(t, CFG) == expected


def test_sample_rate_bounds() -> None:
    t = trade()
    assert settle(t, RulesConfig(sec_sample_rate=0.0)).disposition is Disposition.COMPLETED
    assert settle(t, RulesConfig(sec_sample_rate=1.0)) == Decision(Disposition.SEC_FLAGGED, Reason.SAMPLED, 1000.0)


def test_sample_is_a_stable_function_of_identity() -> None:
    # Pinned value: a change of hash function would silently change which replayed trades get flagged.
    assert sample_point("user_trades/0/1") == pytest.approx(0.4814337636333267, abs=0)
    rate = 0.05
    flagged = [
        i
        for i in range(20_000)
        if settle(trade(identity=f"user_trades/0/{i}"), RulesConfig(sec_sample_rate=rate)).disposition
        is Disposition.SEC_FLAGGED
    ]
    assert 0.04 < len(flagged) / 20_000 < 0.06
    again = [i for i in range(20_000) if sample_point(f"user_trades/0/{i}") < rate]
    assert flagged == again


@pytest.mark.parametrize("rate", [0.0, 5e-324, 1e-9, 0.05, 0.5, 1 - 2**-53, 1.0, 2.0, -1.0])
def test_sample_threshold_is_exactly_the_float_comparison(rate: float) -> None:
    # The hot path compares digests as bytes; the digest just below the threshold must sample and the one at
    # it must not, under the documented rule `sample_point < rate`.
    below = RulesConfig(sec_sample_rate=rate).sample_below
    if len(below) == 9:  # every digest samples
        assert rate > (2**64 - 1) / 2**64
        return
    threshold = int.from_bytes(below, "big")
    if threshold > 0:
        assert (threshold - 1) / 2**64 < rate
    assert not threshold / 2**64 < rate
