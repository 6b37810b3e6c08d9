-- The second entry path: Confluent's Azure Functions Sink Connector POSTs batches of user_trades to the
-- HTTP-triggered function `settle_sink_batch` (route /api/settle, function key auth).
--
-- Ordering versus throughput:
--   max.batch.size = 64       one request per 64 records, the same batch size as the Kafka trigger, well
--                             under the 100 MB request limit and settled within one delivery deadline.
--   max.pending.requests = 1  one request in flight per task, so records of a partition are settled in
--                             offset order; raising it overlaps requests and gives up that order.
--   tasks.max                 parallelism comes from tasks (each owns whole partitions), not from pending
--                             requests: set it up to the partition count of user_trades.
-- behavior.on.error = fail: a 5xx (failed delivery to trade-settlements) stops the task rather than skip
-- records; poison records never cause an error status (they are dead-lettered by the function).
-- Secrets (function key, API key and secret) are substituted at apply time, never committed.
-- This is the fully managed connector (Confluent Cloud): ksqlDB creates it only when the request carries
-- X-Confluent-API-Key / X-Confluent-API-Secret, which scripts/ksql_apply.py adds in --mode cloud. Every key
-- is one of the fully managed connector's documented keys. Self-managed ksqlDB + Connect uses
-- ksql/self-managed/03-sink-connector.sql instead (--mode self-managed).

CREATE SINK CONNECTOR IF NOT EXISTS USER_TRADES_AZURE_FUNCTIONS_SINK WITH (
  'connector.class' = 'AzureFunctionsSink',
  'topics' = 'user_trades',
  'input.data.format' = 'PROTOBUF',
  'function.url' = '${FUNCTION_URL}',
  'function.key' = '${FUNCTION_KEY}',
  'kafka.auth.mode' = 'KAFKA_API_KEY',
  'kafka.api.key' = '${KAFKA_API_KEY}',
  'kafka.api.secret' = '${KAFKA_API_SECRET}',
  'max.batch.size' = '64',
  'max.pending.requests' = '1',
  'behavior.on.error' = 'fail',
  'tasks.max' = '${SINK_TASKS}'
);
