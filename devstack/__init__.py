"""Local development stack: a real single-node Apache Kafka broker (KRaft) and a real
Confluent-API-compatible Schema Registry, both fetched from Maven Central and run on 127.0.0.1.

Local tooling only: nothing here is imported by the function app at run time.
"""
