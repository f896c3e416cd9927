"""Kafka adapters: connection settings, error translation and the admin client."""

from mesh.kafka.connection import client_kwargs, kafka_errors, open_admin

__all__ = ["client_kwargs", "kafka_errors", "open_admin"]
