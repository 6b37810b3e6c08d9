-- Stateful analysis over trade-settlements, the two analyses of ksql/04-settlement-analysis.sql as Flink window
-- table functions. Event time is the settlement's Kafka record timestamp (`$rowtime`), which the function sets to
-- the trade's time. A window is emitted once, when the watermark passes its end (ksqlDB emits every change and
-- keeps the window open for its grace period); the watermark trails the largest timestamp seen by
-- trade-settlements' watermark_delay (flink/tables.toml), and a settlement arriving after its window was emitted
-- is dropped as late, as ksqlDB drops one after the grace period.

-- Counts and amounts per symbol and disposition, per 1-minute window.
INSERT INTO settlements_by_symbol_disposition
SELECT
  `symbol` AS SYMBOL,
  `disposition` AS DISPOSITION,
  COUNT(*) AS TRADES,
  SUM(`amount`) AS AMOUNT,
  window_start AS WINDOW_START,
  window_end AS WINDOW_END
FROM TABLE(TUMBLE(TABLE `trade-settlements`, DESCRIPTOR(`$rowtime`), INTERVAL '1' MINUTE))
GROUP BY `symbol`, `disposition`, window_start, window_end;

-- Money waiting on a decision, per symbol and hour: Pending (large) and SEC-flagged amounts are exposure that has not
-- settled; the rejected count shows data-quality trouble.
INSERT INTO exposure_by_symbol_hourly
SELECT
  `symbol` AS SYMBOL,
  SUM(CASE WHEN `disposition` = 'Pending' THEN `amount` ELSE CAST(0 AS DOUBLE) END) AS PENDING_AMOUNT,
  SUM(CASE WHEN `disposition` = 'SEC Flagged' THEN `amount` ELSE CAST(0 AS DOUBLE) END) AS FLAGGED_AMOUNT,
  SUM(CASE WHEN `disposition` = 'Completed' THEN `amount` ELSE CAST(0 AS DOUBLE) END) AS COMPLETED_AMOUNT,
  SUM(CASE WHEN `disposition` = 'Rejected' THEN 1 ELSE 0 END) AS REJECTED_TRADES,
  COUNT(*) AS TRADES,
  window_start AS WINDOW_START,
  window_end AS WINDOW_END
FROM TABLE(TUMBLE(TABLE `trade-settlements`, DESCRIPTOR(`$rowtime`), INTERVAL '1' HOUR))
GROUP BY `symbol`, window_start, window_end;
