"""Schema Registry access: one bounded request at a time, schemas in either form a registry returns, and
the line between a record's poison and the batch's retry.

Only the registry's own "not found" (HTTP 404, error code 40403) makes a record poison; any other failure (a
gateway's 404, a 5xx, a timeout, a garbage answer) is the registry or the network failing now, so the batch
fails and is retried. Schemas come back as a base64 descriptor (Confluent's `format=serialized`) or as
`.proto` text (as ksqlDB registers them, and as Apicurio returns them), compiled by protoc with their
references resolved transitively.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

import settlement.serde.proto_text as proto_text
from settlement.core.errors import PoisonRecord, TransientError
from settlement.core.poison import PoisonKind

SCHEMA_NOT_FOUND = 40403  # the Confluent API's own error code for an unknown schema id
_MAX_REFERENCE_DEPTH = 8
_MAX_REFERENCES = 64


def message_at(fdp: descriptor_pb2.FileDescriptorProto, indexes: list[int]) -> descriptor_pb2.DescriptorProto:
    """The message a record's index path names in its schema (poison when the path is not there)."""
    messages = fdp.message_type
    found = None
    for index in indexes or [0]:
        if index >= len(messages):
            raise PoisonRecord(PoisonKind.WRONG_SCHEMA_TYPE, f"message index path {indexes} is not in the schema")
        found = messages[index]
        messages = found.nested_type
    assert found is not None
    return found


def writer_descriptor(client: SchemaRegistryClient, schema: Schema, what: str) -> descriptor_pb2.FileDescriptorProto:
    """A registered Protobuf schema in either form the registry may return: base64 descriptor or text."""
    text = schema.schema_str or ""
    if not proto_text.looks_like_text(text):
        return _from_base64(text, what)
    references: dict[str, str | descriptor_pb2.FileDescriptorProto] = {}
    _collect_references(client, schema, what, references, depth=0)
    try:
        return proto_text.compile_text(text, references)
    except proto_text.ProtoTextError as exc:
        raise PoisonRecord(PoisonKind.WRONG_SCHEMA_TYPE, f"{what} is not a readable Protobuf schema ({exc})") from None


def _from_base64(text: str, what: str) -> descriptor_pb2.FileDescriptorProto:
    """A schema in the form Confluent's registry returns for `format=serialized`: a base64 descriptor."""
    try:
        return descriptor_pb2.FileDescriptorProto.FromString(base64.standard_b64decode(text))
    except (ValueError, DecodeError):
        raise PoisonRecord(PoisonKind.WRONG_SCHEMA_TYPE, f"{what} is not a readable Protobuf schema") from None


def _collect_references(
    client: SchemaRegistryClient,
    schema: Schema,
    what: str,
    out: dict[str, str | descriptor_pb2.FileDescriptorProto],
    depth: int,
) -> None:
    """Every file the schema imports, transitively, as the registry returns it (text or descriptor)."""
    if depth > _MAX_REFERENCE_DEPTH or len(out) > _MAX_REFERENCES:
        raise PoisonRecord(PoisonKind.WRONG_SCHEMA_TYPE, f"{what}: too many or too deeply nested references")
    for ref in schema.references or []:
        if not ref.name or not ref.subject or ref.version is None:
            raise PoisonRecord(PoisonKind.WRONG_SCHEMA_TYPE, f"{what} has an incomplete reference")
        if ref.name in out:
            continue
        fetch = functools.partial(client.get_version, ref.subject, ref.version, fmt="serialized")
        ref_schema = registry_call(f"resolving reference {ref.name} of {what}", fetch).schema
        ref_text = ref_schema.schema_str or ""
        if proto_text.looks_like_text(ref_text):
            out[ref.name] = ref_text
        else:
            fdp = _from_base64(ref_text, f"reference {ref.name} of {what}")
            fdp.name = ref.name
            out[ref.name] = fdp
        _collect_references(client, ref_schema, what, out, depth + 1)


T = TypeVar("T")


def registry_call(what: str, call: Callable[[], T]) -> T:
    """One registry request. Only the registry's own "not found" (HTTP 404 with error code 40403) says the
    record is poison; any other 404 (a gateway, a wrong path), a 5xx, a timeout or a garbage answer is the
    registry or the network failing now, so the batch fails and is retried."""
    try:
        return call()
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404 and exc.error_code == SCHEMA_NOT_FOUND:
            raise PoisonRecord(PoisonKind.UNKNOWN_SCHEMA_ID, f"the registry has no such schema ({what})") from None
        detail = str(exc.error_message)[:200]
        raise TransientError(
            f"Schema Registry error {what}: HTTP {exc.http_status_code}, code {exc.error_code}: {detail}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - network failures and garbage answers surface as assorted types
        raise TransientError(f"Schema Registry unreachable {what}: {type(exc).__name__}: {str(exc)[:200]}") from None


def settlement_call(what: str, call: Callable[[], T]) -> T:
    """A registry request for the settlement schema: like any registry request, except that nothing about it
    can make a record poison, so every failure fails the batch for retry."""
    try:
        return registry_call(f"{what} the settlement schema", call)
    except PoisonRecord as exc:
        raise TransientError(f"Schema Registry: {exc.detail}") from None
