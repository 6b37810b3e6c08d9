"""The settlement rules: a decoded trade in, a decision out.

Pure and deterministic on purpose: no I/O, no clock, no randomness. Replaying `user_trades` must give the
same settlements, so the SEC-inspection sample is a stable hash of the trade's identity (its source
record), not a random draw as in the reference demo.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum


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


@dataclass(frozen=True)
class Trade:
    """A joined trade as the rules see it. `user` is the record key (USERID); `regionid` is None when the
    ksqlDB LEFT JOIN found no user row. `identity` names the source record and seeds the SEC sample."""

    user: str | None
    regionid: str | None
    quantity: int
    symbol: str
    price: int
    account: str
    side: str
    identity: str


@dataclass(frozen=True)
class Decision:
    disposition: Disposition
    reason: Reason
    amount: float


def sample_point(identity: str) -> float:
    """Map an identity to [0, 1) stably across processes and Python versions (unlike `hash()`)."""
    digest = hashlib.blake2b(identity.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def settle(trade: Trade, config: RulesConfig) -> Decision:
    """Decide a settlement. Order matters and is the documented one: user, validity, size, SEC, completed."""
    amount = float(trade.quantity) * float(trade.price)
    if not trade.user or not trade.regionid:
        return Decision(Disposition.REJECTED, Reason.NO_USER, amount)
    if not trade.symbol:
        return Decision(Disposition.REJECTED, Reason.NO_SYMBOL, amount)
    if trade.quantity <= 0:
        return Decision(Disposition.REJECTED, Reason.BAD_QUANTITY, amount)
    if trade.price <= 0:
        return Decision(Disposition.REJECTED, Reason.BAD_PRICE, amount)
    if amount > config.large_trade_limit:
        return Decision(Disposition.PENDING, Reason.LARGE_TRADE, amount)
    if trade.symbol in config.sec_watchlist:
        return Decision(Disposition.SEC_FLAGGED, Reason.WATCHLIST, amount)
    if sample_point(trade.identity) < config.sec_sample_rate:
        return Decision(Disposition.SEC_FLAGGED, Reason.SAMPLED, amount)
    return Decision(Disposition.COMPLETED, Reason.WITHIN_LIMIT, amount)
