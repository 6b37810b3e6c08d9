"""Bytes and schemas: Confluent framing, columns by name, the registry calls, the decoder and the encoder.

Above the core (it raises the core's `PoisonRecord`s), below delivery: it knows the Schema Registry, never Kafka.
"""
