"""Replay for debugging: timelines, stepping, diffs against live, exports and shadow replays.

Layers, each importing only those above it::

    _diff      every field path where two states differ                (pure)
    _timeline  history → steps (event, time, task, state change); cut  (pure)
    _stepper   next / previous / jump over a history                   (pure)
    _file      history ↔ JSON lines (export, --from-file)              (files)
    _kafka     offsets by time                                         (Kafka)
    _compare   replay a workflow and compare it with its live snapshot (Kafka)
    _shadow    every workflow of a time window, compared with live     (Kafka)
"""

from mesh.kafka.history import (
    Current,
    History,
    Live,
    Rejection,
    current_workflows,
    latest_snapshots,
    live_state,
    read_history,
    rejections,
    snapshot_state,
)
from mesh.replay._compare import ReplayResult, replay_workflow
from mesh.replay._diff import Difference, diff, diff_states
from mesh.replay._file import export_history, load_history
from mesh.replay._shadow import ShadowResult, shadow_replay
from mesh.replay._stepper import HELP as STEP_HELP
from mesh.replay._stepper import Stepper
from mesh.replay._timeline import (
    Step,
    cut,
    describe_change,
    replayed_state,
    timeline,
    timeline_of,
)
from mesh.times import from_millis, parse_time, to_millis
from mesh.workflows import Recorded

__all__ = [
    "STEP_HELP",
    "Current",
    "Difference",
    "History",
    "Live",
    "Recorded",
    "Rejection",
    "ReplayResult",
    "ShadowResult",
    "Step",
    "Stepper",
    "current_workflows",
    "cut",
    "describe_change",
    "diff",
    "diff_states",
    "export_history",
    "from_millis",
    "latest_snapshots",
    "live_state",
    "load_history",
    "parse_time",
    "read_history",
    "rejections",
    "replay_workflow",
    "replayed_state",
    "shadow_replay",
    "snapshot_state",
    "timeline",
    "timeline_of",
    "to_millis",
]
