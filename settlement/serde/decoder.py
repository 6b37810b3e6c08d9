"""`user_trades` values in: Confluent-framed Protobuf, each writer schema resolved once per process.

Each schema id is resolved in the registry once, in either form it returns, and matched to our `UserTrade`
by column name (`settlement.serde.columns`) before any record written with it is trusted: Protobuf would otherwise
"decode" a record of a different message type, or of a schema whose columns moved, into silent garbage.
After that a record costs one dict lookup on its 6-byte framing and one C-level parse, not a registry round
trip: that gap decides the throughput (see bench/).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from confluent_kafka.schema_registry import SchemaRegistryClient
from google.protobuf.message import DecodeError

import settlement.serde.columns as columns
from settlement import telemetry
from settlement.core.errors import PoisonRecord
from settlement.core.poison import PoisonKind
from settlement.core.records import TradeValue
from settlement.serde.framing import HEADER_MIN, frame_header, split
from settlement.serde.registry import message_at, registry_call, writer_descriptor

_MAX_CACHED_SCHEMAS = 1024


class TradeDecoder:
    """Turns a `user_trades` value into a `TradeValue` read by column name (`settlement.serde.columns`), or raises
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
        parse = self._by_framing.get(value[:HEADER_MIN])
        if parse is None:
            schema_id, indexes, body = split(value)
            parse = self._verify(schema_id, indexes, unknown)
        else:
            body = value[HEADER_MIN:]
        try:
            return parse(body)
        except DecodeError as exc:
            raise PoisonRecord(PoisonKind.UNDECODABLE, f"Protobuf payload does not parse ({exc})") from None

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
                self._by_framing[frame_header(schema_id)] = parse  # what the fast path in `_decode` looks up
            return parse

    def _check(self, schema_id: int, indexes: list[int]) -> columns.Parser:
        telemetry.count_registry_lookup("schema")
        schema = registry_call(
            f"resolving schema id {schema_id}", lambda: self._client.get_schema(schema_id, fmt="serialized")
        )
        if schema.schema_type != "PROTOBUF":
            raise PoisonRecord(
                PoisonKind.WRONG_SCHEMA_TYPE, f"schema id {schema_id} is {schema.schema_type}, not PROTOBUF"
            )
        fdp = writer_descriptor(self._client, schema, f"schema id {schema_id}")
        return columns.reader_for(message_at(fdp, indexes), f"schema id {schema_id}")
