"""The Workflow Manager's runtime: the Kafka process around the pure decider, and replay.

Layers, each importing only those above it::

    _timers        a heap of per-workflow instants                           (pure)
    _offsets       which input records the state already includes            (pure)
    _partition     per-partition workflows, timers and producer              (pure)
    _records       input types per topic; records in and out                 (pure)
    _snapshots     when to snapshot, start markers, where rebuild starts     (pure)
    _work          one transaction's decisions on one partition              (pure)
    _reader        read a partition up to its end                            (Kafka)
    _rebuild       snapshots + history → the workflows of a partition        (Kafka)
    _ownership     assignment: fence, rebuild, resume; revocation            (Kafka)
    _transactions  does the broker have transactions?                        (Kafka)
    _produce       send a work's records and wait once                       (Kafka)
    _manager       WorkflowManager: consume → decide → produce               (Kafka)
    _replay        replay_workflow: history → state, compared with snapshot  (Kafka)

Run it with ``mesh run workflows``, or in-process::

    manager = WorkflowManager(settings)
    await manager.run(stop)          # ``manager.ready`` is set once it consumes
"""

from mesh.workflows.runtime._manager import WorkflowManager
from mesh.workflows.runtime._replay import ReplayResult, differences, replay_workflow
from mesh.workflows.runtime._snapshots import SnapshotPolicy
from mesh.workflows.runtime._timers import TimerHeap

__all__ = [
    "ReplayResult",
    "SnapshotPolicy",
    "TimerHeap",
    "WorkflowManager",
    "differences",
    "replay_workflow",
]
