"""The Azure Functions Sink Connector's values: schemaless JSON of the Protobuf record, or base64 bytes.

The connector turns a struct value into JSON with the ksqlDB-generated field names (upper case; any case is
accepted), and passes bytes through as base64 (Confluent-framed Protobuf, read like the Kafka path's).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from settlement.core.errors import PoisonRecord
from settlement.core.poison import PoisonKind
from settlement.core.records import INT32, TradeValue
from settlement.schemas.user_trade_pb2 import UserTrade

_STRING_FIELDS = ("regionid", "symbol", "account", "side")
_INT_FIELDS = ("quantity", "price")


def trade_from_json(value: bytes) -> UserTrade:
    """A UserTrade from the connector's schemaless JSON of the Protobuf value (field names in any case)."""
    try:
        obj = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PoisonRecord(PoisonKind.UNDECODABLE, "value is neither Confluent-framed bytes nor JSON") from None
    if not isinstance(obj, dict):
        raise PoisonRecord(PoisonKind.UNDECODABLE, f"value is a JSON {type(obj).__name__}, not an object")
    fields = {str(k).lower(): v for k, v in obj.items()}
    trade = UserTrade()
    for name in _STRING_FIELDS:
        v = fields.get(name)
        if v is None:
            continue
        if not isinstance(v, str):
            raise PoisonRecord(PoisonKind.UNDECODABLE, f"value field {name.upper()} is not a string")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise PoisonRecord(PoisonKind.UNDECODABLE, f"value field {name.upper()} is not valid Unicode") from None
        setattr(trade, name, v)
    for name in _INT_FIELDS:
        v = fields.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not INT32[0] <= v <= INT32[1]:
            raise PoisonRecord(PoisonKind.UNDECODABLE, f"value field {name.upper()} is not an int32")
        setattr(trade, name, v)
    return trade


def sink_decoder(framed: Callable[[bytes | None], TradeValue]) -> Callable[[bytes | None], TradeValue]:
    """JSON struct values are read as JSON; anything else (base64 bytes) as Confluent-framed Protobuf."""

    def decode(value: bytes | None) -> TradeValue:
        if value and value[:1] == b"{":
            return trade_from_json(value)
        return framed(value)

    return decode
