"""Bytes and schemas: Confluent framing, columns by name, the registry calls, the decoder and the encoder.

Above the core (it raises the core's `PoisonRecord`s), below delivery: it knows the Schema Registry, never Kafka.
Its surface is `__all__` below: code outside `settlement/` imports these names from `settlement.serde`, never a module
inside it (an import-linter contract holds it to that).
"""

from settlement.serde.columns import layout_conflicts, reader_for
from settlement.serde.decoder import TradeDecoder
from settlement.serde.encoder import SettlementEncoder
from settlement.serde.framing import frame_header, split
from settlement.serde.json_value import sink_decoder, trade_from_json
from settlement.serde.proto_text import ProtoTextError, compile_text, looks_like_text, render_file
from settlement.serde.registry import registry_call

__all__ = [
    "ProtoTextError",
    "SettlementEncoder",
    "TradeDecoder",
    "compile_text",
    "frame_header",
    "layout_conflicts",
    "looks_like_text",
    "reader_for",
    "registry_call",
    "render_file",
    "sink_decoder",
    "split",
    "trade_from_json",
]
