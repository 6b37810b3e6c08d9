-- The sink connector for self-managed ksqlDB with Kafka Connect (Confluent Platform), applied in place of
-- ksql/03-sink-connector.sql by `scripts/ksql_apply.py --mode self-managed`. Same batching choices as the
-- fully managed connector (see that file); this one takes the self-managed class and its own keys: the
-- worker's converters read the Protobuf values through the registry, and results go to the reporter topics.

CREATE SINK CONNECTOR IF NOT EXISTS USER_TRADES_AZURE_FUNCTIONS_SINK WITH (
  'connector.class' = 'io.confluent.connect.http.AzureFunctionsSinkConnector',
  'topics' = 'user_trades',
  'tasks.max' = '${SINK_TASKS}',
  'key.converter' = 'org.apache.kafka.connect.storage.StringConverter',
  'value.converter' = 'io.confluent.connect.protobuf.ProtobufConverter',
  'value.converter.schema.registry.url' = '${SCHEMA_REGISTRY_URL}',
  'function.url' = '${FUNCTION_URL}',
  'function.key' = '${FUNCTION_KEY}',
  'max.batch.size' = '64',
  'max.pending.requests' = '1',
  'request.timeout' = '60000',
  'retry.timeout' = '3600000',
  'behavior.on.error' = 'fail',
  'reporter.bootstrap.servers' = '${KAFKA_BOOTSTRAP_SERVERS}',
  'reporter.result.topic.name' = 'success-user-trades-azure-functions-sink',
  'reporter.error.topic.name' = 'error-user-trades-azure-functions-sink',
  'confluent.topic.bootstrap.servers' = '${KAFKA_BOOTSTRAP_SERVERS}'
);
