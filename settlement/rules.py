"""The settlement rules: a decoded trade in, a decision out.

Pure and deterministic on purpose: no I/O, no clock, no randomness. Replaying `user_trades` must give the
same settlements, so the SEC-inspection sample is a stable hash of the trade's identity (its source
record), not a random draw as in the reference demo.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


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


class Trade(NamedTuple):
    """A joined trade as the rules see it. `user` is the record key (USERID); `regionid` is None when the
    ksqlDB LEFT JOIN found no user row. `identity` names the source record and seeds the SEC sample.
    (Immutable tuples: built once per record on the hot path, cheaper than frozen dataclasses.)"""

    user: str | None
    regionid: str | None
    quantity: int
    symbol: str
    price: int
    account: str
    side: str
    identity: str


class Decision(NamedTuple):
    disposition: Disposition
    reason: Reason
    amount: float


def sample_point(identity: str) -> float:
    """Map an identity to [0, 1) stably across processes and Python versions (unlike `hash()`)."""
    digest = hashlib.blake2b(identity.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def settle(trade: Trade, config: RulesConfig) -> Decision:
    """Decide a settlement. Order matters and is the documented one: user, validity, size, SEC, completed."""
    return decide(trade.user, trade.regionid, trade.quantity, trade.symbol, trade.price, trade.identity, config)


def decide(
    user: str | None, regionid: str | None, quantity: int, symbol: str, price: int, identity: str, config: RulesConfig
) -> Decision:
    """`settle` on the fields the rules read, for the hot path (no `Trade` built per record)."""
    amount = float(quantity) * float(price)
    if not user or not regionid:
        return Decision(Disposition.REJECTED, Reason.NO_USER, amount)
    if not symbol:
        return Decision(Disposition.REJECTED, Reason.NO_SYMBOL, amount)
    if quantity <= 0:
        return Decision(Disposition.REJECTED, Reason.BAD_QUANTITY, amount)
    if price <= 0:
        return Decision(Disposition.REJECTED, Reason.BAD_PRICE, amount)
    if amount > config.large_trade_limit:
        return Decision(Disposition.PENDING, Reason.LARGE_TRADE, amount)
    if symbol in config.sec_watchlist:
        return Decision(Disposition.SEC_FLAGGED, Reason.WATCHLIST, amount)
    if sample_point(identity) < config.sec_sample_rate:
        return Decision(Disposition.SEC_FLAGGED, Reason.SAMPLED, amount)
    return Decision(Disposition.COMPLETED, Reason.WITHIN_LIMIT, amount)
