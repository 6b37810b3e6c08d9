-- Stateful analysis over trade-settlements (written by the function, Protobuf via the Schema Registry).
-- Column names and order match proto/trade_settlement.proto field for field; event time is the settlement's
-- `timestamp` (the trade record's epoch-millisecond Kafka timestamp), so windows reflect when trades
-- happened, and a replay lands in the same windows.
-- VALUE_SCHEMA_FULL_NAME is the proto's full name, so the schema ksqlDB registers for this stream and the one
-- the function registers (proto/trade_settlement.proto) are one message to the registry, whichever comes
-- first. The topic is created (or checked) by scripts/ksql_apply.py before this runs; PARTITIONS must then
-- match it, which the tool sees to.

CREATE STREAM IF NOT EXISTS TRADE_SETTLEMENTS (
  USERID VARCHAR KEY,
  `user` VARCHAR,
  `symbol` VARCHAR,
  `amount` DOUBLE,
  `disposition` VARCHAR,
  `reason` VARCHAR,
  `timestamp` BIGINT,
  `source_topic` VARCHAR,
  `source_partition` INT,
  `source_offset` BIGINT
) WITH (
  KAFKA_TOPIC = 'trade-settlements',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'PROTOBUF',
  VALUE_SCHEMA_FULL_NAME = 'tradesettlement.v1.TradeSettlement',
  PARTITIONS = ${SETTLEMENTS_PARTITIONS},
  TIMESTAMP = '`timestamp`'
);

-- Counts and amounts per symbol and disposition, one table for all dispositions, per 1-minute window.
-- The grace period admits settlements up to 30 s late (retries, a slow instance) before a window closes.
CREATE TABLE IF NOT EXISTS SETTLEMENTS_BY_SYMBOL_DISPOSITION WITH (
  KAFKA_TOPIC = 'settlements_by_symbol_disposition',
  KEY_FORMAT = 'JSON',
  VALUE_FORMAT = 'JSON'
) AS SELECT
  `symbol` AS SYMBOL,
  `disposition` AS DISPOSITION,
  COUNT(*) AS TRADES,
  SUM(`amount`) AS AMOUNT,
  WINDOWSTART AS WINDOW_START,
  WINDOWEND AS WINDOW_END
FROM TRADE_SETTLEMENTS
WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 30 SECONDS)
GROUP BY `symbol`, `disposition`
EMIT CHANGES;

-- What trading operations asks next: money waiting on a decision, per symbol and hour. Pending (large) and
-- SEC-flagged amounts are exposure that has not settled; the rejected count shows data-quality trouble.
-- Every CASE branch must have the THEN type exactly: `0.0` is a DECIMAL literal in ksqlDB, so the ELSE of a
-- DOUBLE amount is CAST(0 AS DOUBLE).
CREATE TABLE IF NOT EXISTS EXPOSURE_BY_SYMBOL_HOURLY WITH (
  KAFKA_TOPIC = 'exposure_by_symbol_hourly',
  KEY_FORMAT = 'JSON',
  VALUE_FORMAT = 'JSON'
) AS SELECT
  `symbol` AS SYMBOL,
  SUM(CASE WHEN `disposition` = 'Pending' THEN `amount` ELSE CAST(0 AS DOUBLE) END) AS PENDING_AMOUNT,
  SUM(CASE WHEN `disposition` = 'SEC Flagged' THEN `amount` ELSE CAST(0 AS DOUBLE) END) AS FLAGGED_AMOUNT,
  SUM(CASE WHEN `disposition` = 'Completed' THEN `amount` ELSE CAST(0 AS DOUBLE) END) AS COMPLETED_AMOUNT,
  SUM(CASE WHEN `disposition` = 'Rejected' THEN 1 ELSE 0 END) AS REJECTED_TRADES,
  COUNT(*) AS TRADES,
  WINDOWSTART AS WINDOW_START,
  WINDOWEND AS WINDOW_END
FROM TRADE_SETTLEMENTS
WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 1 MINUTE)
GROUP BY `symbol`
EMIT CHANGES;
