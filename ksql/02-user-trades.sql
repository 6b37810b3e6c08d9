-- The join that feeds the settlement function. Wire contract with proto/user_trade.proto:
-- the key column USERID goes to the record key (KAFKA format, UTF-8 string); the value columns are numbered
-- in SELECT order from 1: REGIONID=1, QUANTITY=2, SYMBOL=3, PRICE=4, ACCOUNT=5, SIDE=6.
-- LEFT JOIN: a trade whose user is not in USERS keeps its USERID key but has a null REGIONID ("no user").
-- VALUE_PROTOBUF_NULLABLE_REPRESENTATION = 'OPTIONAL' writes every column as a proto3 `optional` field, so a
-- null REGIONID is an explicit absence on the wire, as proto/user_trade.proto declares it.
-- Partitions bound the Kafka trigger's scale-out: the scale controller never runs more instances than this.
-- The topic is created (or checked) by scripts/ksql_apply.py first, and PARTITIONS set to match it.

CREATE STREAM IF NOT EXISTS USER_TRADES WITH (
  KAFKA_TOPIC = 'user_trades',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'PROTOBUF',
  VALUE_SCHEMA_FULL_NAME = 'tradesettlement.v1.UserTrade',
  VALUE_PROTOBUF_NULLABLE_REPRESENTATION = 'OPTIONAL',
  PARTITIONS = ${USER_TRADES_PARTITIONS}
) AS SELECT
  S.USERID AS USERID,
  U.REGIONID AS REGIONID,
  S.QUANTITY AS QUANTITY,
  S.SYMBOL AS SYMBOL,
  S.PRICE AS PRICE,
  S.ACCOUNT AS ACCOUNT,
  S.SIDE AS SIDE
FROM STOCKTRADE S
LEFT JOIN USERS U ON S.USERID = U.USERID
EMIT CHANGES;
