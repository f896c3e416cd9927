"""The Workflow Manager's runtime: the Kafka process around the pure decider, and replay.

Layers, each importing only those above it::

    _timers        a heap of per-workflow instants                           (pure)
    _partition     per-partition workflows and timers                        (pure)
    _records       input types per topic; records in and out                 (pure)
    _snapshots     when to snapshot, start markers, where rebuild starts     (pure)
    _work          one round's decisions on one partition                    (pure)
    _rebuild       snapshots + history → the workflows of a partition        (Kafka)
    _produce       send a work's records and wait once                       (Kafka)
    _manager       WorkflowManager: the app on the transactional loop        (Kafka)

The consumer group, producers, fencing, commits and aborts are the one transactional loop's
(:mod:`mesh.kafka.loop`), which the Agent Manager runs on too.

Run it with ``mesh run workflows``, or in-process::

    manager = WorkflowManager(settings)
    await manager.run(stop)          # ``manager.ready`` is set once it consumes
"""

from mesh.workflows.runtime._manager import WorkflowManager
from mesh.workflows.runtime._snapshots import SnapshotPolicy
from mesh.workflows.runtime._timers import TimerHeap

__all__ = [
    "SnapshotPolicy",
    "TimerHeap",
    "WorkflowManager",
]
