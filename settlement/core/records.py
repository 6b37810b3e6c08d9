"""The shape every entry path (Kafka trigger, sink-connector HTTP POST, local host) hands to the batch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple, Protocol

# The range of the int32 columns a settlement reads (QUANTITY, PRICE): a value outside it, from a writer that widened
# a column or from the sink connector's JSON, is dead-lettered as out of range, never truncated.
INT32 = (-(2**31), 2**31 - 1)


class InputRecord(NamedTuple):
    """One `user_trades` record with the coordinates that make it traceable and replayable.

    `timestamp_ms` is the Kafka record timestamp in epoch milliseconds, or None when the host did not pass
    one (such a record is dead-lettered rather than stamped with the wall clock). `headers` are the record's
    own headers, carried onto its dead letter so that a redrive restores the record whole.
    """

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


def host_key(raw: object) -> bytes | None:
    """A record key as the trigger receives it. The extension hands keys over as text (keyDataType String:
    invalid UTF-8 replaced by U+FFFD), so a key read straight from Kafka (a gap, the repair) goes through the same
    decoding here, and a record settles to the same bytes whichever path read it."""
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return text.encode("utf-8")


def parse_timestamp(raw: object) -> int | None:
    """Epoch milliseconds from the host's timestamp (ISO 8601 text, naive meaning UTC; or epoch ms)."""
    if isinstance(raw, str) and raw.endswith("Z"):
        # The form the extension always sends (Json.NET's UTC DateTime): one C call per record, no checks.
        try:
            return round(datetime.fromisoformat(raw).timestamp() * 1000)
        except ValueError:
            pass  # the general path below decides
    if raw is None or raw == "":
        return None
    try:
        if isinstance(raw, int | float):
            stamp = int(raw)
        else:
            text = str(raw).strip()
            if text.isascii() and text.lstrip("-").isdigit() and len(text) <= 20:
                stamp = int(text)
            else:
                moment = datetime.fromisoformat(text)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                stamp = round(moment.timestamp() * 1000)
    except (ValueError, OverflowError):  # NaN, infinities, unparseable text: no usable timestamp
        return None
    return stamp if -(2**63) <= stamp < 2**63 else None


class TradeValue(Protocol):
    """The columns of a `user_trades` value that the settlement reads, whichever class carries them: the
    generated `UserTrade`, the sink's JSON reading, or a view compiled for a writer that numbers its columns
    differently (`settlement.serde.columns`). A writer schema must hold each of these columns by name."""

    regionid: str
    quantity: int
    symbol: str
    price: int


READ_COLUMNS: tuple[str, ...] = tuple(TradeValue.__annotations__)
