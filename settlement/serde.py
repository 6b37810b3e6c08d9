"""Confluent-framed Protobuf in and out, through the Schema Registry.

Decoding: the framing (magic byte, schema id, message indexes) is parsed by confluent-kafka's `SchemaId`
(after bounding the index array); each schema id is resolved in the registry once per process, in either
form a registry returns (base64 descriptor, or `.proto` text as ksqlDB registers it, compiled by protoc),
and matched to our `UserTrade` by column name (`settlement.columns`) before any record written with it is
trusted. Protobuf would otherwise "decode" a record of a different message type, or of a schema whose
columns moved, into silent garbage. After that, a record costs one header lookup and one C-level parse, not
a registry round trip: that gap decides the throughput (see bench/). Only the registry's own "not found"
(40403) makes a record poison.

Encoding: the settlement schema is registered once per process as `.proto` text (or the latest version is
used), then each settlement is the fixed framing + `SerializeToString()`.
"""

from __future__ import annotations

import base64
import functools
import io
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.serde import SchemaId
from confluent_kafka.serialization import SerializationError
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from settlement import columns, proto_text, telemetry
from settlement.errors import PoisonRecord, TransientError
from settlement.poison import PoisonKind
from settlement.records import TradeValue
from settlement.schemas.trade_settlement_pb2 import TradeSettlement

_MAGIC = 0
_HEADER_MIN = 6  # magic + 4-byte id + at least one message-index byte
_SCHEMA_NOT_FOUND = 40403  # the Confluent API's own error code for an unknown schema id
_MAX_CACHED_SCHEMAS = 1024
_MAX_REFERENCE_DEPTH = 8
_MAX_REFERENCES = 64


def _message_at(fdp: descriptor_pb2.FileDescriptorProto, indexes: list[int]) -> descriptor_pb2.DescriptorProto:
    messages = fdp.message_type
    found = None
    for index in indexes or [0]:
        if index >= len(messages):
            raise PoisonRecord(PoisonKind.WRONG_SCHEMA_TYPE, f"message index path {indexes} is not in the schema")
        found = messages[index]
        messages = found.nested_type
    assert found is not None
    return found


_MAX_INDEXES = 16  # message nesting depth; real schemas stay in single digits
_MAX_VARINT_BYTES = 5  # a zigzag int32


def _check_index_framing(value: bytes) -> None:
    """Bound the message-index array before anyone parses it: a hostile record with a 65 KB varint or
    millions of indexes would otherwise cost seconds of CPU in the parser. Beyond the limits it is poison."""
    pos = 5

    def varint() -> int:
        nonlocal pos
        start = pos
        while pos < len(value) and value[pos] & 0x80 and pos - start < _MAX_VARINT_BYTES:
            pos += 1
        if pos >= len(value) or pos - start >= _MAX_VARINT_BYTES:
            raise PoisonRecord(PoisonKind.TRUNCATED_HEADER, "message-index framing is truncated or over its limits")
        pos += 1
        raw = 0
        for shift, byte in enumerate(value[start:pos]):
            raw |= (byte & 0x7F) << (7 * shift)
        return (raw >> 1) ^ -(raw & 1)  # zigzag

    count = varint()
    if not 0 < count <= _MAX_INDEXES:
        raise PoisonRecord(PoisonKind.TRUNCATED_HEADER, f"message-index count {count} is outside 1..{_MAX_INDEXES}")
    for _ in range(count):
        varint()


def framing(schema_id: int) -> bytes:
    """The 6-byte Confluent framing of a value of the schema's first message: magic, id, message index [0]."""
    return b"\x00" + schema_id.to_bytes(4, "big") + b"\x00"


class TradeDecoder:
    """Turns a `user_trades` value into a `TradeValue` read by column name (`settlement.columns`), or raises
    `PoisonRecord` / `TransientError`."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._client = client
        self._good: dict[tuple[int, tuple[int, ...]], columns.Parser] = {}
        # a subset of _good, keyed by the 6 bytes that start such records (message index [0])
        self._by_framing: dict[bytes, columns.Parser] = {}
        self._lock = threading.Lock()

    def for_batch(self) -> Callable[[bytes | None], TradeValue]:
        """A decoder for one batch. Its memo of schema ids the registry does not know lives only as long as
        the batch: a batch full of one unknown id costs one lookup, and the next batch asks again, so a
        schema registered meanwhile (or a registry that was lagging) is never held against later records."""
        unknown: dict[tuple[int, tuple[int, ...]], PoisonRecord] = {}
        return functools.partial(self._decode, unknown)  # a C-level call per record, unlike a lambda

    def prefetch_latest(self, subject: str) -> None:
        """Resolve and check the latest schema of `subject` ahead of the records written with it (a warm
        start). Best effort: any failure leaves it to the first record, which resolves it the usual way."""
        try:
            latest = self._client.get_latest_version(subject)
            if latest.schema_id is None:
                return
            self._verify(int(latest.schema_id), (0,), {})
        except Exception:  # noqa: BLE001 - PoisonRecord, TransientError, registry errors: the records decide
            return

    def decode(
        self, value: bytes | None, unknown: dict[tuple[int, tuple[int, ...]], PoisonRecord] | None = None
    ) -> TradeValue:
        return self._decode({} if unknown is None else unknown, value)

    def _decode(self, unknown: dict[tuple[int, tuple[int, ...]], PoisonRecord], value: bytes | None) -> TradeValue:
        if not value:
            raise PoisonRecord(PoisonKind.EMPTY_VALUE, "record value is null or empty")
        # The common case costs one dict lookup: the 6-byte framing (magic, id, index [0]) of a verified schema.
        parse = self._by_framing.get(value[:_HEADER_MIN])
        if parse is None:
            parse, body = self._body(value, unknown)
        else:
            body = value[_HEADER_MIN:]
        try:
            return parse(body)
        except DecodeError as exc:
            raise PoisonRecord(PoisonKind.UNDECODABLE, f"Protobuf payload does not parse ({exc})") from None

    def _body(
        self, value: bytes, unknown: dict[tuple[int, tuple[int, ...]], PoisonRecord]
    ) -> tuple[columns.Parser, bytes]:
        """Check the framing and its schema; return the schema's parser and the Protobuf payload after it."""
        if value[0] != _MAGIC:
            raise PoisonRecord(
                PoisonKind.BAD_MAGIC_BYTE, f"first byte is 0x{value[0]:02x}, not the Confluent magic byte 0x00"
            )
        if len(value) < _HEADER_MIN:
            raise PoisonRecord(PoisonKind.TRUNCATED_HEADER, f"value is {len(value)} bytes, shorter than the framing")
        indexes: tuple[int, ...]
        if value[5] == 0:
            # The common framing, message-index path [0] written as the single byte 0x00.
            sid, indexes, body = int.from_bytes(value[1:5], "big"), (0,), value[_HEADER_MIN:]
        else:
            _check_index_framing(value)
            schema_id = SchemaId("PROTOBUF")  # anything else: confluent-kafka's own parser
            try:
                payload = schema_id.from_bytes(io.BytesIO(value))
            except (SerializationError, EOFError, struct.error, IndexError) as exc:
                raise PoisonRecord(PoisonKind.TRUNCATED_HEADER, f"unreadable message-index framing ({exc})") from None
            assert schema_id.id is not None
            sid, indexes, body = schema_id.id, tuple(schema_id.message_indexes or [0]), payload.read()
        return self._verify(sid, indexes, unknown), body

    def _verify(
        self, schema_id: int, indexes: tuple[int, ...], unknown: dict[tuple[int, tuple[int, ...]], PoisonRecord]
    ) -> columns.Parser:
        key = (schema_id, indexes)
        parse = self._good.get(key)
        if parse is not None:
            return parse
        if key in unknown:
            raise unknown[key]
        with self._lock:
            parse = self._good.get(key)
            if parse is not None:
                return parse
            try:
                parse = self._check(schema_id, list(indexes))
            except PoisonRecord as poison:
                if len(unknown) < _MAX_CACHED_SCHEMAS:
                    unknown[key] = poison
                raise
            if len(self._good) >= _MAX_CACHED_SCHEMAS:
                # hostile streams of distinct ids must not grow memory without bound
                self._by_framing.clear()
                self._good.clear()
            self._good[key] = parse
            if indexes == (0,):
                self._by_framing[framing(schema_id)] = parse  # what the fast path in `_decode` looks up
            return parse

    def _check(self, schema_id: int, indexes: list[int]) -> columns.Parser:
        telemetry.count_registry_lookup("schema")
        schema = _registry_call(
            f"resolving schema id {schema_id}", lambda: self._client.get_schema(schema_id, fmt="serialized")
        )
        if schema.schema_type != "PROTOBUF":
            raise PoisonRecord(
                PoisonKind.WRONG_SCHEMA_TYPE, f"schema id {schema_id} is {schema.schema_type}, not PROTOBUF"
            )
        fdp = writer_descriptor(self._client, schema, f"schema id {schema_id}")
        return columns.reader_for(_message_at(fdp, indexes), f"schema id {schema_id}")


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
        ref_schema = _registry_call(f"resolving reference {ref.name} of {what}", fetch).schema
        ref_text = ref_schema.schema_str or ""
        if proto_text.looks_like_text(ref_text):
            out[ref.name] = ref_text
        else:
            fdp = _from_base64(ref_text, f"reference {ref.name} of {what}")
            fdp.name = ref.name
            out[ref.name] = fdp
        _collect_references(client, ref_schema, what, out, depth + 1)


T = TypeVar("T")


def _registry_call(what: str, call: Callable[[], T]) -> T:
    """One registry request. Only the registry's own "not found" (HTTP 404 with error code 40403) says the
    record is poison; any other 404 (a gateway, a wrong path), a 5xx, a timeout or a garbage answer is the
    registry or the network failing now, so the batch fails and is retried."""
    try:
        return call()
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404 and exc.error_code == _SCHEMA_NOT_FOUND:
            raise PoisonRecord(PoisonKind.UNKNOWN_SCHEMA_ID, f"the registry has no such schema ({what})") from None
        detail = str(exc.error_message)[:200]
        raise TransientError(
            f"Schema Registry error {what}: HTTP {exc.http_status_code}, code {exc.error_code}: {detail}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - network failures and garbage answers surface as assorted types
        raise TransientError(f"Schema Registry unreachable {what}: {type(exc).__name__}: {str(exc)[:200]}") from None


class SettlementEncoder:
    """Encodes settlements for one topic: a fixed 6-byte framing + `SerializeToString()`.

    The schema is registered as `.proto` text (rendered from the generated descriptor), the form ksqlDB
    registers its own schemas in, so both sides' registrations are compared text to text whichever comes
    first (Apicurio 3.0.x cannot compare a base64 descriptor with text). With `auto_register` off the latest
    registered version is used instead, after checking that each of its numbers means our column. Either way
    the registry is asked once per process; after that a settlement costs one `SerializeToString()` (DESIGN §4: 0.5 µs).
    """

    def __init__(self, client: SchemaRegistryClient, topic: str, auto_register: bool) -> None:
        self._client = client
        self._subject = f"{topic}-value"
        self._auto_register = auto_register
        self._framing: bytes | None = None
        self._lock = threading.Lock()

    def prefetch(self) -> None:
        """Start resolving the settlement schema in the background, so that a fresh process's first batch
        overlaps it with decoding (its own writer-schema lookup) and the producer's connection. A failure
        here is not reported: `encode` resolves again and raises it where the batch can be retried."""

        def resolve() -> None:
            try:
                self._resolve()
            except Exception:  # noqa: BLE001 - surfaced by encode() on the batch's own path
                return

        threading.Thread(target=resolve, name="settlement-schema-prefetch", daemon=True).start()

    def encode(self, settlement: TradeSettlement) -> bytes:
        framing = self._framing or self._resolve()
        return framing + settlement.SerializeToString()

    def _resolve(self) -> bytes:
        with self._lock:
            if self._framing is None:
                schema_id = self._register() if self._auto_register else self._latest()
                self._framing = framing(schema_id)
            return self._framing

    def _register(self) -> int:
        telemetry.count_registry_lookup("register")
        text = proto_text.render_file(TradeSettlement.DESCRIPTOR.file)
        schema = Schema(text, "PROTOBUF")
        return _settlement_call("registering", lambda: self._client.register_schema(self._subject, schema))

    def _latest(self) -> int:
        telemetry.count_registry_lookup("latest")
        latest = _settlement_call("looking up", lambda: self._client.get_latest_version(self._subject))
        try:
            fdp = writer_descriptor(self._client, latest.schema, f"the latest {self._subject} schema")
        except PoisonRecord as exc:
            raise TransientError(f"settlement schema unusable: {exc.detail}") from None
        ours = descriptor_pb2.DescriptorProto()
        TradeSettlement.DESCRIPTOR.CopyToProto(ours)
        # We frame with message index [0]: the first message must read what we write, column for column.
        conflicts = columns.layout_conflicts(ours, fdp.message_type[0]) if fdp.message_type else ["no message"]
        if conflicts or latest.schema_id is None:
            raise TransientError(
                f"the latest {self._subject} schema is not what the settlement function writes "
                f"({'; '.join(conflicts) or 'no schema id'})"
            )
        return int(latest.schema_id)


def _settlement_call(what: str, call: Callable[[], T]) -> T:
    """A registry request for the settlement schema: like any registry request, except that nothing about it
    can make a record poison, so every failure fails the batch for retry."""
    try:
        return _registry_call(f"{what} the settlement schema", call)
    except PoisonRecord as exc:
        raise TransientError(f"Schema Registry: {exc.detail}") from None
