-- Test data for an empty Confluent Cloud cluster: fully managed Datagen Source connectors writing the
-- STOCK_TRADES and USERS quickstarts (JSON) into the `stocktrade` and `users` topics that ksql/01-sources.sql reads.
-- Not applied by default (ksql_apply.py applies ksql/*.sql only); apply it on purpose, before the other files:
--   .venv/bin/python scripts/ksql_apply.py --server https://<ksqldb-endpoint> \
--       --bootstrap-servers <broker:9092> ksql/datagen/datagen-sources.sql
-- The tool's topic step creates the pipeline's topics first (stocktrade and users co-partitioned), so the
-- connectors write into existing topics. Keys: the fully managed connector's documented keys
-- (connector.class, kafka.auth.mode, kafka.api.key, kafka.api.secret, kafka.topic, output.data.format,
-- quickstart, max.interval, tasks.max). Confluent Cloud's ksqlDB creates connectors only when the request carries
-- X-Confluent-API-Key / X-Confluent-API-Secret, which ksql_apply.py adds in --mode cloud. Datagen bills as a
-- connector while it runs: drop it (ksql/teardown/teardown.sql) when done. Not for production data.

CREATE SOURCE CONNECTOR IF NOT EXISTS DATAGEN_STOCKTRADE WITH (
  'connector.class' = 'DatagenSource',
  'kafka.auth.mode' = 'KAFKA_API_KEY',
  'kafka.api.key' = '${KAFKA_API_KEY}',
  'kafka.api.secret' = '${KAFKA_API_SECRET}',
  'kafka.topic' = 'stocktrade',
  'output.data.format' = 'JSON',
  'quickstart' = 'STOCK_TRADES',
  'max.interval' = '1000',
  'tasks.max' = '1'
);

CREATE SOURCE CONNECTOR IF NOT EXISTS DATAGEN_USERS WITH (
  'connector.class' = 'DatagenSource',
  'kafka.auth.mode' = 'KAFKA_API_KEY',
  'kafka.api.key' = '${KAFKA_API_KEY}',
  'kafka.api.secret' = '${KAFKA_API_SECRET}',
  'kafka.topic' = 'users',
  'output.data.format' = 'JSON',
  'quickstart' = 'USERS',
  'max.interval' = '1000',
  'tasks.max' = '1'
);
