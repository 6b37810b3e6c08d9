"""Framing, registry access, the decoder and the encoder, without I/O: confluent-kafka's `mock://` registry.

The mock answers an unknown id with error code 40400, where Confluent's registry (and the local one) answers
40403; the poison-versus-retry line is therefore tested with the real error objects raised by a stub.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from localrun.experiments import ksql_schema
from settlement.core.errors import PoisonRecord, TransientError
from settlement.core.poison import PoisonKind
from settlement.schemas.trade_settlement_pb2 import TradeSettlement
from settlement.schemas.user_trade_pb2 import UserTrade
from settlement.serde.decoder import TradeDecoder
from settlement.serde.encoder import SettlementEncoder
from settlement.serde.framing import frame_header, split
from settlement.serde.registry import registry_call

TRADE = UserTrade(regionid="Region_1", quantity=7, symbol="ZVV", price=50, account="A1", side="BUY")


def mock_registry() -> Any:
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


class Counting:
    """A registry client that counts schema lookups, and answers unknown ids as Confluent's registry does."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.lookups = inner, 0

    def get_schema(self, schema_id: int, fmt: str | None = None) -> Any:
        self.lookups += 1
        try:
            return self.inner.get_schema(schema_id, fmt=fmt)
        except SchemaRegistryError:
            raise SchemaRegistryError(404, 40403, "Schema not found") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"\x01\x00\x00\x00\x01\x00", PoisonKind.BAD_MAGIC_BYTE),
        (b"\x00\x00\x00", PoisonKind.TRUNCATED_HEADER),
        (b"\x00\x00\x00\x00\x01" + b"\xff" * 70_000, PoisonKind.TRUNCATED_HEADER),  # a hostile varint
        (b"\x00\x00\x00\x00\x01\x7e" + b"\x00" * 100, PoisonKind.TRUNCATED_HEADER),  # 63 indexes: over the limit
    ],
)
def test_framing_that_cannot_be_read_is_the_records_poison(value: bytes, kind: PoisonKind) -> None:
    with pytest.raises(PoisonRecord) as caught:
        split(value)
    assert caught.value.kind is kind


def test_framing_reads_the_common_and_a_nested_message_index_path() -> None:
    assert split(frame_header(42) + b"body") == (42, (0,), b"body")
    # path [1, 0]: zigzag count 2, then 1 and 0
    assert split(b"\x00" + (7).to_bytes(4, "big") + b"\x04\x02\x00" + b"body") == (7, (1, 0), b"body")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (SchemaRegistryError(404, 40403, "Schema not found"), PoisonRecord),
        (SchemaRegistryError(404, 40401, "Subject not found"), TransientError),  # not the schema's own 404
        (SchemaRegistryError(404, -1, "<html>gateway</html>"), TransientError),
        (SchemaRegistryError(503, 50003, "unavailable"), TransientError),
        (TimeoutError("read timed out"), TransientError),
        (ValueError("garbage answer"), TransientError),
    ],
)
def test_only_the_registrys_own_not_found_is_poison(raised: Exception, expected: type) -> None:
    def call() -> None:
        raise raised

    with pytest.raises(expected):
        registry_call("resolving schema id 9", call)


def test_the_decoder_resolves_a_schema_once_and_reads_ksqldbs_text_form() -> None:
    client = Counting(mock_registry())
    schema_id = ksql_schema.register(client.inner, "ut-value")
    decoder = TradeDecoder(client)  # type: ignore[arg-type]
    decode = decoder.for_batch()
    for _ in range(3):
        trade = decode(ksql_schema.encode(schema_id, TRADE))
        assert (trade.regionid, trade.quantity, trade.symbol, trade.price) == ("Region_1", 7, "ZVV", 50)
    assert client.lookups == 1


def test_an_unknown_id_is_poison_asked_once_per_batch_and_again_by_the_next() -> None:
    client = Counting(mock_registry())
    decoder = TradeDecoder(client)  # type: ignore[arg-type]
    for _ in range(2):
        decode = decoder.for_batch()
        for _ in range(5):
            with pytest.raises(PoisonRecord) as caught:
                decode(frame_header(123456) + TRADE.SerializeToString())
            assert caught.value.kind is PoisonKind.UNKNOWN_SCHEMA_ID
    assert client.lookups == 2


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"", PoisonKind.EMPTY_VALUE), (None, PoisonKind.EMPTY_VALUE), (b"\x00\x00\x00", PoisonKind.TRUNCATED_HEADER)],
)
def test_payload_checks_are_the_decoders(value: bytes | None, kind: PoisonKind) -> None:
    with pytest.raises(PoisonRecord) as caught:
        TradeDecoder(mock_registry()).decode(value)
    assert caught.value.kind is kind


def test_a_payload_that_does_not_parse_is_undecodable() -> None:
    client = mock_registry()
    schema_id = ksql_schema.register(client, "ut-value")
    with pytest.raises(PoisonRecord) as caught:
        TradeDecoder(client).decode(frame_header(schema_id) + b"\xff\xff\xff")
    assert caught.value.kind is PoisonKind.UNDECODABLE


def test_the_encoder_registers_its_text_once_and_frames_with_the_id() -> None:
    client = mock_registry()
    encoder = SettlementEncoder(client, "settlements", auto_register=True)
    value = encoder.encode(TradeSettlement(user="User_1", symbol="ZVV", amount=350.0))
    schema_id = client.get_latest_version("settlements-value").schema_id
    assert value[:6] == frame_header(schema_id)
    assert TradeSettlement.FromString(value[6:]).symbol == "ZVV"
    assert "message TradeSettlement" in (client.get_schema(schema_id).schema_str or "")


def test_without_auto_register_a_missing_or_misnumbered_schema_fails_the_batch_for_retry() -> None:
    client = mock_registry()
    with pytest.raises(TransientError, match="settlement schema"):
        SettlementEncoder(client, "nothing", auto_register=False).encode(TradeSettlement())
    from settlement.serde import proto_text

    text = proto_text.render_file(TradeSettlement.DESCRIPTOR.file).replace("string user = 1", "string USERX = 1")
    ksql_schema.register(client, "renamed-value", text)
    with pytest.raises(TransientError, match="field 1 is USERX there, user here"):
        SettlementEncoder(client, "renamed", auto_register=False).encode(TradeSettlement())


def test_librdkafka_fencing_lines_are_warnings_and_other_errors_stay_errors(caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from settlement.delivery.producer import LIBRDKAFKA_LOG

    with caplog.at_level(logging.DEBUG, logger=LIBRDKAFKA_LOG.name):
        LIBRDKAFKA_LOG.critical("TXNERR Fatal transaction error: This instance has been fenced by a newer instance")
        LIBRDKAFKA_LOG.error("FAIL Connect to ipv4#127.0.0.1:9 failed: Connection refused")
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"]
