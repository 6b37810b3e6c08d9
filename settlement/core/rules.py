"""The settlement rules: a decoded trade in, a verdict out (`decide`, the one entry point).

Pure and deterministic on purpose: no I/O, no clock, no randomness. Replaying `user_trades` must give the
same settlements, so the SEC-inspection sample is a stable hash of the trade's identity (its source
record), not a random draw as in the reference demo.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

from settlement.core.records import TradeValue


class Disposition(StrEnum):
    REJECTED = "Rejected"
    PENDING = "Pending"
    SEC_FLAGGED = "SEC Flagged"
    COMPLETED = "Completed"


class Reason(StrEnum):
    NO_USER = "No user account specified"
    NO_SYMBOL = "No symbol specified"
    BAD_QUANTITY = "Quantity must be positive"
    BAD_PRICE = "Price must be positive"
    LARGE_TRADE = "Large trade"
    WATCHLIST = "SEC inspection: watch-listed symbol"
    SAMPLED = "SEC inspection: sampled"
    WITHIN_LIMIT = "Within same day limit"


DEFAULT_LARGE_TRADE_LIMIT = 100_000.0
DEFAULT_SEC_SAMPLE_RATE = 0.05


@dataclass(frozen=True)
class RulesConfig:
    """Thresholds, validated by the config module. Defaults follow the reference demo, made deterministic."""

    large_trade_limit: float = DEFAULT_LARGE_TRADE_LIMIT
    sec_watchlist: frozenset[str] = field(default_factory=frozenset)
    sec_sample_rate: float = DEFAULT_SEC_SAMPLE_RATE

    @cached_property
    def sample_below(self) -> bytes:
        """`sample_point(x) < sec_sample_rate` as a comparison of x's 8-byte digest with these bytes, so the hot
        path builds no int or float per record. Exact: `d / 2**64` rounds monotonically in `d`, so the digests
        it samples are those below the smallest `d` whose point reaches the rate, found here by bisection."""
        lo, hi = 0, 2**64
        while lo < hi:
            mid = (lo + hi) // 2
            if mid / 2**64 >= self.sec_sample_rate:
                hi = mid
            else:
                lo = mid + 1
        # Big-endian bytes of equal length compare as the integers do; 9 bytes of ff..ff00 exceed every digest.
        return lo.to_bytes(8, "big") if lo < 2**64 else b"\xff" * 8 + b"\x00"


class Verdict(NamedTuple):
    """What the rules decided. The settlement's amount is `amount_of` the trade, the same figure the rules
    weighed."""

    disposition: Disposition
    reason: Reason


# One immutable verdict per outcome: the hot path returns these, allocating nothing per record.
_NO_USER = Verdict(Disposition.REJECTED, Reason.NO_USER)
_NO_SYMBOL = Verdict(Disposition.REJECTED, Reason.NO_SYMBOL)
_BAD_QUANTITY = Verdict(Disposition.REJECTED, Reason.BAD_QUANTITY)
_BAD_PRICE = Verdict(Disposition.REJECTED, Reason.BAD_PRICE)
_LARGE_TRADE = Verdict(Disposition.PENDING, Reason.LARGE_TRADE)
_WATCHLIST = Verdict(Disposition.SEC_FLAGGED, Reason.WATCHLIST)
_SAMPLED = Verdict(Disposition.SEC_FLAGGED, Reason.SAMPLED)
_COMPLETED = Verdict(Disposition.COMPLETED, Reason.WITHIN_LIMIT)
_blake2b = hashlib.blake2b


def _digest(identity: str) -> bytes:
    return _blake2b(identity.encode("utf-8"), digest_size=8).digest()


def sample_point(identity: str) -> float:
    """Map an identity to [0, 1) stably across processes and Python versions (unlike `hash()`)."""
    return int.from_bytes(_digest(identity), "big") / 2**64


def amount_of(quantity: int, price: int) -> float:
    """A trade's amount, which the rules weigh and the settlement carries (floating point: int32 extremes do
    not overflow)."""
    return float(quantity) * float(price)


def decide(trade: TradeValue, user: str | None, identity: str, config: RulesConfig) -> Verdict:
    """The rules, in their documented order: user, validity, size, SEC, completed.

    `trade` is the decoded value as it is (any `TradeValue`: the generated `UserTrade`, a view, the sink's
    JSON reading), so nothing is built per record; `user` is the record key (USERID), None or empty when the
    key was; `identity` names the source record and seeds the SEC sample. An unset `regionid` reads as "":
    the LEFT JOIN found no user row. Returns one of eight shared verdicts.
    """
    if not user or not trade.regionid:
        return _NO_USER
    symbol, quantity, price = trade.symbol, trade.quantity, trade.price
    if not symbol:
        return _NO_SYMBOL
    if quantity <= 0:
        return _BAD_QUANTITY
    if price <= 0:
        return _BAD_PRICE
    if amount_of(quantity, price) > config.large_trade_limit:
        return _LARGE_TRADE
    if symbol in config.sec_watchlist:
        return _WATCHLIST
    if _digest(identity) < config.sample_below:
        return _SAMPLED
    return _COMPLETED
