"""Which client errors mean another process took the partition ("fenced": leave it, the taker repairs) as against
any other failure of a transaction (the range is ours to settle again). One place, as Kafka Streams'
StreamsProducer maps every client error to fenced or fatal."""

from __future__ import annotations

from confluent_kafka import KafkaError

from settlement.core.errors import DeliveryError
from settlement.delivery.producer import kafka_error

_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


class Fenced(DeliveryError):
    """Another process initialised this partition's transactional id: what this one had open is aborted."""


def is_fenced(exc: BaseException) -> bool:
    err = kafka_error(exc)
    return err is not None and (err.code() in _FENCED or err.fatal())
