"""Why a record cannot be settled. Each kind is final for that record: retrying cannot fix the bytes,
so it goes to the dead-letter topic instead of failing (and endlessly retrying) the whole batch."""

from __future__ import annotations

from enum import StrEnum


class PoisonKind(StrEnum):
    EMPTY_VALUE = "empty-value"
    OVERSIZE = "oversize"
    BAD_MAGIC_BYTE = "bad-magic-byte"
    TRUNCATED_HEADER = "truncated-header"
    UNKNOWN_SCHEMA_ID = "unknown-schema-id"
    WRONG_SCHEMA_TYPE = "wrong-schema-type"
    UNDECODABLE = "undecodable-payload"
    OUT_OF_RANGE = "value-out-of-range"
    BAD_KEY = "bad-key"
    NO_TIMESTAMP = "no-timestamp"
    UNSETTLEABLE = "unsettleable"
