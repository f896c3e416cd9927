"""The Resource Allocator's runtime: the Kafka app around the pure allocator.

Layers, each importing only those above it::

    _reader     replaying the topics into an ``Allocator``                    (Kafka)
    _outbox     what the component publishes: records, tombstones, DLQ        (Kafka)
    _app        the component: ``run_resources(settings, stop)``              (Kafka)
"""

from mesh.resources.runtime._app import ResourceService, run_resources
from mesh.resources.runtime._reader import read_allocator

__all__ = ["ResourceService", "read_allocator", "run_resources"]
