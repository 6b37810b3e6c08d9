""".proto text → `FileDescriptorProto`, with protoc itself (from grpcio-tools).

ksqlDB registers the schemas it generates as `.proto` text, and some registries (Apicurio) return text even
for `format=serialized`; Confluent's registry returns a base64 `FileDescriptorProto`. The text must be read
exactly as the producer's toolchain reads it, so this compiles it with protoc rather than a hand-written
parser. It runs once per schema id (the decoder caches the result), so it stays off the hot path, and
`grpc_tools` is imported only here, on first use, so it does not weigh on the function's cold start.
"""

from __future__ import annotations

import importlib.resources
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from google.protobuf import descriptor_pb2

MAIN = "registry_schema.proto"
_lock = threading.Lock()  # protoc keeps process-global state: one compilation at a time


class ProtoTextError(ValueError):
    """protoc refused the text (or a reference): the schema itself is unreadable, not the registry."""


def looks_like_text(schema_str: str) -> bool:
    """Text schemas hold braces and spaces; base64 never does."""
    return "{" in schema_str or "syntax" in schema_str or "message " in schema_str


def _safe_path(root: Path, name: str) -> Path:
    """A reference name as a path below `root`; a registry cannot make us write elsewhere."""
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not name.endswith(".proto"):
        raise ProtoTextError(f"reference name {name!r} is not a relative .proto path")
    return root.joinpath(*rel.parts)


def compile_text(
    text: str,
    references: Mapping[str, str | descriptor_pb2.FileDescriptorProto] | None = None,
) -> descriptor_pb2.FileDescriptorProto:
    """Compile `text` (whose imports are `references`: name → text or descriptor) into its descriptor."""
    from grpc_tools import protoc

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    with _lock, tempfile.TemporaryDirectory(prefix="schema-") as tmp:
        root = Path(tmp) / "src"
        root.mkdir()
        (root / MAIN).write_text(text, encoding="utf-8")
        binary = descriptor_pb2.FileDescriptorSet()
        for name, ref in (references or {}).items():
            if isinstance(ref, descriptor_pb2.FileDescriptorProto):
                binary.file.append(ref)
                continue
            path = _safe_path(root, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(ref, encoding="utf-8")
        out = Path(tmp) / "out.pb"
        args = ["protoc", f"-I{root}", f"-I{well_known}", f"--descriptor_set_out={out}", "--include_imports"]
        if binary.file:
            given = Path(tmp) / "refs.pb"
            given.write_bytes(binary.SerializeToString())
            args.append(f"--descriptor_set_in={given}")
        if protoc.main([*args, MAIN]) != 0 or not out.exists():
            raise ProtoTextError("protoc rejects the schema text")
        compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    for fdp in compiled.file:
        if fdp.name == MAIN:
            return fdp
    raise ProtoTextError("protoc produced no descriptor for the schema")


_SCALARS: Mapping[int, str] = MappingProxyType(
    {
        descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
        descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
        descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
        descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
        descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
        descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
        descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
        descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
        descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: "sint32",
        descriptor_pb2.FieldDescriptorProto.TYPE_SINT64: "sint64",
    }
)


def render_file(file_descriptor: Any) -> str:
    """proto3 text of a file of flat scalar messages (what our own schemas are); a round trip through protoc
    is tested. Anything richer raises rather than render something else."""
    fdp = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(fdp)
    if fdp.syntax != "proto3" or fdp.dependency or fdp.enum_type:
        raise ValueError(f"{fdp.name}: only flat proto3 files without imports or enums are rendered")
    lines = ['syntax = "proto3";', ""]
    if fdp.package:
        lines += [f"package {fdp.package};", ""]
    for message in fdp.message_type:
        lines.append(f"message {message.name} {{")
        for f in message.field:
            if f.type not in _SCALARS or f.label == f.LABEL_REPEATED or message.nested_type:
                raise ValueError(f"{message.name}.{f.name}: only scalar singular fields are rendered")
            label = "optional " if f.proto3_optional else ""
            lines.append(f"  {label}{_SCALARS[f.type]} {f.name} = {f.number};")
        lines.append("}")
    return "\n".join(lines) + "\n"
