"""Why a record cannot be settled. Each kind is final for that record: retrying cannot fix the bytes,
so it goes to the dead-letter topic instead of failing (and endlessly retrying) the whole batch.

Where each kind is raised (one module per check; a new reason goes beside its kin):

| kind | raised by | the check |
|---|---|---|
| bad-key, no-timestamp | `admission` | the record: its key, its Kafka timestamp |
| oversize | `admission` | the record's value over SETTLEMENT_MAX_RECORD_BYTES |
| oversize | `planner`, `deadletter` | its settlement over message.max.bytes; refused as too large by the producer |
| empty-value | `decoder` | a null or empty payload |
| bad-magic-byte, truncated-header | `framing` | the payload's Confluent framing |
| unknown-schema-id | `registry` (`registry_call`) | the registry's own 40403 |
| wrong-schema-type | `decoder`; `registry`; `columns` | not PROTOBUF; no such message or schema text; a column |
| value-out-of-range | `columns` | a widened column's value outside int32 |
| undecodable-payload | `decoder`; `json_value` | Protobuf that does not parse; the connector's JSON value |
| unsettleable | `planner` | anything unexpected that only this record triggers |
"""

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
