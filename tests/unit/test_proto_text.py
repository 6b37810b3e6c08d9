"""protoc (grpcio-tools) reads the `.proto` text registries return; bad text is the schema's fault."""

from __future__ import annotations

import pytest

from localrun.experiments import ksql_schema
from settlement.schemas.user_trade_pb2 import UserTrade
from settlement.serde.columns import reader_for
from settlement.serde.proto_text import ProtoTextError, compile_text, looks_like_text


def test_the_text_ksqldb_registers_reads_as_our_user_trade_on_the_fast_path() -> None:
    for full_name in ("tradesettlement.v1.UserTrade", None):
        for optional in (True, False):
            fdp = compile_text(ksql_schema.schema_text(full_name, optional))
            assert fdp.message_type[0].name == (full_name or "ConnectDefault1").rsplit(".", 1)[-1]
            assert reader_for(fdp.message_type[0], "ksqlDB's schema") == UserTrade.FromString


def test_well_known_imports_and_text_references_resolve() -> None:
    text = (
        'syntax = "proto3";\nimport "google/protobuf/timestamp.proto";\nimport "a/b.proto";\n'
        "message M { google.protobuf.Timestamp at = 1; b.N n = 2; }\n"
    )
    fdp = compile_text(text, {"a/b.proto": 'syntax = "proto3";\npackage b;\nmessage N { int32 x = 1; }\n'})
    assert [f.type_name for f in fdp.message_type[0].field] == [".google.protobuf.Timestamp", ".b.N"]


@pytest.mark.parametrize("name", ["../escape.proto", "/etc/x.proto", "not-a-proto.txt"])
def test_a_reference_name_cannot_write_outside_the_scratch_directory(name: str) -> None:
    with pytest.raises(ProtoTextError, match=r"relative \.proto path"):
        compile_text('syntax = "proto3";\nmessage M {}\n', {name: "x"})


def test_text_protoc_rejects_is_an_error_of_the_schema() -> None:
    with pytest.raises(ProtoTextError):
        compile_text("syntax = 'proto3'; message { broken")


def test_base64_is_never_taken_for_text() -> None:
    assert not looks_like_text("CgpzZXR0bGUucHJvdG8SEnRyYWRlc2V0dGxlbWVudC52MQ==")
    assert looks_like_text(ksql_schema.schema_text())


def test_our_schemas_render_to_text_protoc_reads_back_identically() -> None:
    from google.protobuf import descriptor_pb2

    from settlement.schemas.trade_settlement_pb2 import TradeSettlement
    from settlement.serde.proto_text import render_file

    for message in (TradeSettlement, UserTrade):
        ours = descriptor_pb2.FileDescriptorProto()
        message.DESCRIPTOR.file.CopyToProto(ours)
        back = compile_text(render_file(message.DESCRIPTOR.file))
        for field in back.message_type[0].field:
            field.ClearField("json_name")  # protoc fills it in descriptor sets; CopyToProto leaves it out
        assert back.package == ours.package
        assert back.message_type[0] == ours.message_type[0]
