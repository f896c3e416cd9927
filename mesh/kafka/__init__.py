"""Kafka adapters: connection settings, error translation, the admin client and the type of a
consumed record."""

from mesh.kafka.connection import client_kwargs, kafka_errors, open_admin
from mesh.kafka.records import ConsumedRecord

__all__ = ["ConsumedRecord", "client_kwargs", "kafka_errors", "open_admin"]
