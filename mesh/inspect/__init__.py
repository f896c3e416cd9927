"""Operator tools over the mesh's topics: tail, dead letters, consumer groups, filters.

Layers, each importing only those above it::

    _expr     filter expressions (``type == "task.failed" and attempt > 1``)   (pure)
    _records  a consumed record as decoded event or escaped bytes            (pure)
    _read     topics, start/end offsets, offsets by time, reading            (Kafka)
    _tail     ``mesh tail``                                                  (Kafka)
    _dlq      ``mesh dlq list|show``: read and show dead letters             (Kafka)
    _redrive  ``mesh dlq redrive``: back to their topics, safe to re-run     (Kafka)
    _groups   ``mesh groups`` lag and ``reset --to-time``                    (Kafka)

The filter language is reusable anywhere events are shown (``parse_filter(text).matches(fields)``).
"""

from mesh.inspect._dlq import (
    HEADER_REDRIVEN_FROM,
    LETTER_FIELDS,
    REDRIVE_GROUP,
    Letter,
    Letters,
    Original,
    describe_original,
    find,
    original_of,
    parse_position,
    read_letters,
    select,
    whole_letter,
)
from mesh.inspect._expr import MISSING, Filter, parse_filter
from mesh.inspect._groups import (
    GroupInfo,
    PartitionLag,
    ResetPlan,
    ResetStep,
    apply_reset,
    group_infos,
    plan_reset,
)
from mesh.inspect._records import EVENT_TYPES, FILTER_NAMES, Seen, escape, see
from mesh.inspect._redrive import RedriveResult, redrive
from mesh.inspect._tail import Start, TailOptions, keyed_by_workflow, tail

__all__ = [
    "EVENT_TYPES",
    "FILTER_NAMES",
    "HEADER_REDRIVEN_FROM",
    "LETTER_FIELDS",
    "MISSING",
    "REDRIVE_GROUP",
    "Filter",
    "GroupInfo",
    "Letter",
    "Letters",
    "Original",
    "PartitionLag",
    "RedriveResult",
    "ResetPlan",
    "ResetStep",
    "Seen",
    "Start",
    "TailOptions",
    "apply_reset",
    "describe_original",
    "escape",
    "find",
    "group_infos",
    "keyed_by_workflow",
    "original_of",
    "parse_filter",
    "parse_position",
    "plan_reset",
    "read_letters",
    "redrive",
    "see",
    "select",
    "tail",
    "whole_letter",
]
