-- Tear-down of everything ksql/ created, in dependency order (a derived table before the stream it reads, the
-- join before its sources). DROP of a stream or table that a persistent query writes terminates that query;
-- DELETE TOPIC removes the backing topic too. Apply on purpose, topics step skipped:
--   .venv/bin/python scripts/ksql_apply.py --server https://<ksqldb-endpoint> --skip-topics ksql/teardown/teardown.sql
-- Left afterwards: user_trades-dlq (not a ksqlDB source: `confluent kafka topic delete user_trades-dlq`), the
-- function's consumer groups, and the Schema Registry subjects (`confluent schema-registry subject delete`).

DROP CONNECTOR IF EXISTS USER_TRADES_AZURE_FUNCTIONS_SINK;
DROP CONNECTOR IF EXISTS DATAGEN_STOCKTRADE;
DROP CONNECTOR IF EXISTS DATAGEN_USERS;
DROP TABLE IF EXISTS EXPOSURE_BY_SYMBOL_HOURLY DELETE TOPIC;
DROP TABLE IF EXISTS SETTLEMENTS_BY_SYMBOL_DISPOSITION DELETE TOPIC;
DROP STREAM IF EXISTS TRADE_SETTLEMENTS DELETE TOPIC;
DROP STREAM IF EXISTS USER_TRADES DELETE TOPIC;
DROP TABLE IF EXISTS USERS DELETE TOPIC;
DROP STREAM IF EXISTS STOCKTRADE DELETE TOPIC;
