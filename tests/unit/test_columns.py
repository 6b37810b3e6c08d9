"""Writer schemas read by column name, as ksqlDB's edited SELECT lists make them (no I/O: protoc + upb).

Each writer here is the text ksqlDB registers for a column list (`localrun.experiments.ksql_schema.schema_text`),
compiled by protoc, and each value is encoded by that writer's own message class: what a real producer
holding the schema writes. The assertion is always the value the settlement would read.
"""

from __future__ import annotations

import pytest

from localrun.experiments import ksql_schema
from settlement.core.errors import PoisonRecord
from settlement.core.poison import PoisonKind
from settlement.schemas.user_trade_pb2 import UserTrade
from settlement.serde import columns, proto_text

COLUMNS = dict(ksql_schema.COLUMNS)
VALUES = {"REGIONID": "Region_1", "QUANTITY": 7, "SYMBOL": "ZVV", "PRICE": 50, "ACCOUNT": "ACC-9", "SIDE": "BUY"}


def layout(*names: str, **types: str) -> tuple[tuple[str, str], ...]:
    """Columns in this order, each with our type unless retyped."""
    return tuple((name, types.get(name, COLUMNS.get(name, "string"))) for name in names)


def reader(cols: tuple[tuple[str, str], ...], optional: bool = True) -> columns.Parser:
    text = ksql_schema.schema_text(optional=optional, columns=cols)
    return columns.reader_for(proto_text.compile_text(text).message_type[0], "schema id 1")


def written(cols: tuple[tuple[str, str], ...], **values: object) -> bytes:
    cls = ksql_schema.writer_class(ksql_schema.schema_text(columns=cols))
    fields = {name: values.get(name, VALUES.get(name, "NYSE")) for name, _ in cols}
    return cls(**fields).SerializeToString()


def read(cols: tuple[tuple[str, str], ...], **values: object) -> tuple[object, ...]:
    trade = reader(cols)(written(cols, **values))
    return trade.regionid, trade.quantity, trade.symbol, trade.price


EXPECTED = ("Region_1", 7, "ZVV", 50)


@pytest.mark.parametrize("optional", [True, False])
def test_our_own_layout_keeps_the_one_call_fast_path(optional: bool) -> None:
    assert reader(ksql_schema.COLUMNS, optional) == UserTrade.FromString
    assert read(ksql_schema.COLUMNS) == EXPECTED


@pytest.mark.parametrize(
    "cols",
    [
        pytest.param(layout("REGIONID", "QUANTITY", "ACCOUNT", "PRICE", "SYMBOL", "SIDE"), id="symbol-account-swapped"),
        pytest.param(layout("SIDE", "ACCOUNT", "PRICE", "SYMBOL", "QUANTITY", "REGIONID"), id="reversed"),
        pytest.param(
            layout("REGIONID", "QUANTITY", "EXCHANGE", "SYMBOL", "PRICE", "ACCOUNT", "SIDE"), id="inserted-string"
        ),
        pytest.param(
            layout("LOTS", "REGIONID", "QUANTITY", "SYMBOL", "PRICE", "ACCOUNT", "SIDE", LOTS="int32"),
            id="inserted-int-first",
        ),
        pytest.param(layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE", "SIDE"), id="account-dropped"),
        pytest.param(layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE", "ACCOUNT", "SIDE", "EXCHANGE"), id="appended"),
        pytest.param(
            tuple((name.lower(), t) for name, t in layout("REGIONID", "SYMBOL", "QUANTITY", "PRICE")), id="lower-case"
        ),
    ],
)
def test_moved_inserted_appended_and_dropped_columns_read_by_name(cols: tuple[tuple[str, str], ...]) -> None:
    names = {name.upper(): name for name, _ in cols}
    values = {names[k]: v for k, v in VALUES.items() if k in names}
    cls = ksql_schema.writer_class(ksql_schema.schema_text(columns=cols))
    body = cls(**values, **({"EXCHANGE": "NYSE"} if "EXCHANGE" in names else {})).SerializeToString()
    trade = reader(cols)(body)
    assert (trade.regionid, trade.quantity, trade.symbol, trade.price) == EXPECTED


def test_a_writer_with_ours_appended_or_trailing_dropped_is_still_the_fast_path() -> None:
    appended = layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE", "ACCOUNT", "SIDE", "EXCHANGE")
    assert reader(appended) == UserTrade.FromString
    assert reader(layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE")) == UserTrade.FromString
    # ACCOUNT dropped and EXCHANGE (a string) at its number 5: UserTrade would read EXCHANGE as the account
    assert reader(layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE", "EXCHANGE")) != UserTrade.FromString


def test_a_widened_int_reads_while_it_fits_and_dead_letters_when_it_does_not() -> None:
    cols = layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE", "ACCOUNT", "SIDE", PRICE="int64", QUANTITY="int64")
    assert read(cols) == EXPECTED
    assert read(cols, PRICE=2**31 - 1, QUANTITY=-(2**31))[1:] == (-(2**31), "ZVV", 2**31 - 1)
    for value in (2**31, -(2**31) - 1, 2**40):
        with pytest.raises(PoisonRecord) as caught:
            read(cols, PRICE=value)
        assert caught.value.kind is PoisonKind.OUT_OF_RANGE
        assert f"column PRICE holds {value}" in caught.value.detail


@pytest.mark.parametrize(
    ("cols", "reason"),
    [
        (layout("REGIONID", "QUANTITY", "SYMBOL", "ACCOUNT", "SIDE"), "it has no column PRICE"),
        (layout("QUANTITY", "SYMBOL", "PRICE"), "it has no column REGIONID"),
        (
            layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE", PRICE="double"),
            "column PRICE is double, UserTrade.price is int32",
        ),
        (
            layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE", SYMBOL="int32"),
            "column SYMBOL is int32, UserTrade.symbol is string",
        ),
        (layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE", QUANTITY="string"), "column QUANTITY is string"),
        (layout("REGIONID", "QUANTITY", "SYMBOL", "PRICE", "symbol"), "columns SYMBOL, symbol differ only in case"),
    ],
)
def test_a_column_missing_or_unreadable_without_loss_dead_letters_naming_it(
    cols: tuple[tuple[str, str], ...], reason: str
) -> None:
    with pytest.raises(PoisonRecord) as caught:
        reader(cols)
    assert caught.value.kind is PoisonKind.WRONG_SCHEMA_TYPE
    assert reason in caught.value.detail and caught.value.detail.startswith("schema id 1 cannot be read")


def test_wrapper_and_decimal_columns_name_their_message_type() -> None:
    text = (
        'syntax = "proto3";\nimport "google/protobuf/wrappers.proto";\n'
        "message M {\n  google.protobuf.StringValue REGIONID = 1;\n  int32 QUANTITY = 2;\n  string SYMBOL = 3;\n"
        "  int32 PRICE = 4;\n}\n"
    )
    with pytest.raises(PoisonRecord, match=r"column REGIONID is google\.protobuf\.StringValue"):
        columns.reader_for(proto_text.compile_text(text).message_type[0], "schema id 2")
    decimal = (
        'syntax = "proto3";\npackage confluent.type;\nmessage Decimal { bytes value = 1; uint32 precision = 2; }\n'
    )
    text = (
        'syntax = "proto3";\nimport "confluent/type/decimal.proto";\n'
        "message M {\n  string REGIONID = 1;\n  int32 QUANTITY = 2;\n  string SYMBOL = 3;\n"
        "  confluent.type.Decimal PRICE = 4;\n}\n"
    )
    fdp = proto_text.compile_text(text, {"confluent/type/decimal.proto": decimal})
    with pytest.raises(PoisonRecord, match=r"column PRICE is confluent\.type\.Decimal"):
        columns.reader_for(fdp.message_type[0], "schema id 3")


def test_the_settlement_side_refuses_a_number_that_means_another_column() -> None:
    from google.protobuf import descriptor_pb2

    from settlement.schemas.trade_settlement_pb2 import TradeSettlement

    ours = descriptor_pb2.DescriptorProto()
    TradeSettlement.DESCRIPTOR.CopyToProto(ours)
    same = proto_text.compile_text(proto_text.render_file(TradeSettlement.DESCRIPTOR.file)).message_type[0]
    assert columns.layout_conflicts(ours, same) == []
    swapped = proto_text.render_file(TradeSettlement.DESCRIPTOR.file).replace("user = 1", "USER = 2")
    swapped = swapped.replace("symbol = 2", "symbol = 1")
    conflicts = columns.layout_conflicts(ours, proto_text.compile_text(swapped).message_type[0])
    assert conflicts == ["field 1 is symbol there, user here", "field 2 is USER there, symbol here"]
    dropped = proto_text.render_file(TradeSettlement.DESCRIPTOR.file).replace("  string reason = 5;\n", "")
    assert columns.layout_conflicts(ours, proto_text.compile_text(dropped).message_type[0]) == [
        "it has no field 5 (reason)"
    ]
