-- The join that feeds the settlement function, as ksql/02-user-trades.sql does it on ksqlDB, here as an event-time
-- temporal join: each trade meets the users row that was valid at the trade's time (`$rowtime`, its Kafka record
-- timestamp), not whatever row the table holds when the trade happens to be processed. LEFT JOIN: a trade whose user
-- has no row (yet) keeps its USERID and gets a null REGIONID, the function's "no user" case.
-- The same text runs on Confluent Cloud and on the local engine; only the table definitions differ
-- (flink/tables.toml). user_trades' `trade_time` is written as its record timestamp: the settlement written for it
-- then carries the trade's time too, and the analysis windows reflect when trades happened.

INSERT INTO user_trades
SELECT
  s.userid AS USERID,
  u.regionid AS REGIONID,
  s.quantity AS QUANTITY,
  s.symbol AS SYMBOL,
  s.price AS PRICE,
  s.account AS ACCOUNT,
  s.side AS SIDE,
  s.`$rowtime` AS trade_time
FROM stocktrade AS s
LEFT JOIN users FOR SYSTEM_TIME AS OF s.`$rowtime` AS u
  ON s.userid = u.userid;
