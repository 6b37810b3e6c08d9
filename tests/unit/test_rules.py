"""Table test of the settlement rules, including every boundary, through their one entry point."""

from __future__ import annotations

import pytest

from settlement.core.rules import Disposition, Reason, RulesConfig, Verdict, amount_of, decide, sample_point
from settlement.schemas.user_trade_pb2 import UserTrade

CFG = RulesConfig(large_trade_limit=100_000, sec_watchlist=frozenset({"ZWATCH"}), sec_sample_rate=0.0)
IDENTITY = "user_trades/0/1"


def trade(regionid: str | None = "Region_1", quantity: int = 10, price: int = 100, symbol: str = "ZVV") -> UserTrade:
    """The generated message, as the decoder hands it over (regionid None: the field left unset)."""
    t = UserTrade(quantity=quantity, price=price, symbol=symbol, account="ACC1", side="BUY")
    if regionid is not None:
        t.regionid = regionid
    return t


@pytest.mark.parametrize(
    ("user", "t", "expected", "amount"),
    [
        ("User_1", trade(), Verdict(Disposition.COMPLETED, Reason.WITHIN_LIMIT), 1000.0),
        (None, trade(), Verdict(Disposition.REJECTED, Reason.NO_USER), 1000.0),
        ("", trade(), Verdict(Disposition.REJECTED, Reason.NO_USER), 1000.0),
        ("User_1", trade(regionid=None), Verdict(Disposition.REJECTED, Reason.NO_USER), 1000.0),
        ("User_1", trade(regionid=""), Verdict(Disposition.REJECTED, Reason.NO_USER), 1000.0),
        # no user wins over every later rule, as in the reference order
        (None, trade(quantity=5000, price=5000, symbol="ZWATCH"), Verdict(Disposition.REJECTED, Reason.NO_USER), 25e6),
        ("User_1", trade(symbol=""), Verdict(Disposition.REJECTED, Reason.NO_SYMBOL), 1000.0),
        ("User_1", trade(quantity=0), Verdict(Disposition.REJECTED, Reason.BAD_QUANTITY), 0.0),
        ("User_1", trade(quantity=-1), Verdict(Disposition.REJECTED, Reason.BAD_QUANTITY), -100.0),
        ("User_1", trade(price=0), Verdict(Disposition.REJECTED, Reason.BAD_PRICE), 0.0),
        # the limit itself is not "large"; one unit over is
        ("User_1", trade(quantity=1000, price=100), Verdict(Disposition.COMPLETED, Reason.WITHIN_LIMIT), 100_000.0),
        ("User_1", trade(quantity=1000, price=101), Verdict(Disposition.PENDING, Reason.LARGE_TRADE), 101_000.0),
        ("User_1", trade(quantity=100_001, price=1), Verdict(Disposition.PENDING, Reason.LARGE_TRADE), 100_001.0),
        # large wins over SEC
        (
            "User_1",
            trade(quantity=1000, price=101, symbol="ZWATCH"),
            Verdict(Disposition.PENDING, Reason.LARGE_TRADE),
            101_000.0,
        ),
        ("User_1", trade(symbol="ZWATCH"), Verdict(Disposition.SEC_FLAGGED, Reason.WATCHLIST), 1000.0),
        ("User_1", trade(symbol="zwatch"), Verdict(Disposition.COMPLETED, Reason.WITHIN_LIMIT), 1000.0),
        # int32 extremes do not overflow: amount is computed in floating point
        (
            "User_1",
            trade(quantity=2**31 - 1, price=2**31 - 1),
            Verdict(Disposition.PENDING, Reason.LARGE_TRADE),
            float((2**31 - 1) ** 2),
        ),
    ],
)
def test_rules_table(user: str | None, t: UserTrade, expected: Verdict, amount: float) -> None:
    assert decide(t, user, IDENTITY, CFG) == expected
    assert amount_of(t.quantity, t.price) == amount


def test_sample_rate_bounds() -> None:
    t = trade()
    assert decide(t, "User_1", IDENTITY, RulesConfig(sec_sample_rate=0.0)).disposition is Disposition.COMPLETED
    sampled = decide(t, "User_1", IDENTITY, RulesConfig(sec_sample_rate=1.0))
    assert sampled == Verdict(Disposition.SEC_FLAGGED, Reason.SAMPLED)


def test_sample_is_a_stable_function_of_identity() -> None:
    # Pinned value: a change of hash function would silently change which replayed trades get flagged.
    assert sample_point("user_trades/0/1") == pytest.approx(0.4814337636333267, abs=0)
    rate = 0.05
    config = RulesConfig(sec_sample_rate=rate)
    t = trade()
    flagged = [
        i
        for i in range(20_000)
        if decide(t, "User_1", f"user_trades/0/{i}", config).disposition is Disposition.SEC_FLAGGED
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
