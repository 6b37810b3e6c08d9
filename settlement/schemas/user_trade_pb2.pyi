from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class UserTrade(_message.Message):
    __slots__ = ("regionid", "quantity", "symbol", "price", "account", "side")
    REGIONID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    regionid: str
    quantity: int
    symbol: str
    price: int
    account: str
    side: str
    def __init__(self, regionid: _Optional[str] = ..., quantity: _Optional[int] = ..., symbol: _Optional[str] = ..., price: _Optional[int] = ..., account: _Optional[str] = ..., side: _Optional[str] = ...) -> None: ...
