"""The one type of a record consumed from Kafka: :class:`mesh.events.ConsumedRecord`, re-exported
here beside the rest of the Kafka plumbing that reads records."""

from mesh.events import ConsumedRecord

__all__ = ["ConsumedRecord"]
