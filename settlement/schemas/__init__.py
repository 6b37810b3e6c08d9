"""Generated Protobuf modules (do not edit): regenerate with `python scripts/gen_proto.py`.

Its surface is the two messages: code outside `settlement/` imports them from `settlement.schemas`.
"""

from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.schemas.user_trade_pb2 import UserTrade

__all__ = ["TradeSettlement", "UserTrade"]
