-- Sources: the Datagen quickstart topics (stock trades, users), JSON values.
-- Applied in file order by scripts/ksql_apply.py; ${NAME} variables are substituted at apply time.
-- The tool creates the topics first (or reads the partition count of existing ones), so these statements
-- apply to an empty cluster and to one where the topics exist. The join needs both sources co-partitioned.

CREATE STREAM IF NOT EXISTS STOCKTRADE (
  SIDE VARCHAR,
  QUANTITY INT,
  SYMBOL VARCHAR,
  PRICE INT,
  ACCOUNT VARCHAR,
  USERID VARCHAR
) WITH (
  KAFKA_TOPIC = 'stocktrade',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = ${SOURCE_PARTITIONS}
);

CREATE TABLE IF NOT EXISTS USERS (
  USERID VARCHAR PRIMARY KEY,
  REGISTERTIME BIGINT,
  REGIONID VARCHAR,
  GENDER VARCHAR
) WITH (
  KAFKA_TOPIC = 'users',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = ${SOURCE_PARTITIONS}
);
