"""The cyclic garbage collector, tuned for code that allocates many small objects per record
(events, states) and almost none in cycles: services for their whole life, a replay or a
rebuild for its read-and-fold pass.

With CPython's default thresholds a collection runs every 700 allocations and walks the young
objects again and again; it spent a sixth of the Workflow Manager's CPU
(``bench/bench_task_path.py``) and a quarter of a replay's (``bench/bench_replay.py``).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

GC_THRESHOLDS = (50_000, 20, 100)
"""Generation 0 collects after this many allocations (CPython's default is 700)."""


def tune_gc() -> None:
    """For a long-running service: what start-up loaded (modules, settings, templates) moves
    to the permanent generation, and collections run far less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collections as rare as a service's for the block (a long read-and-fold pass), the
    thresholds as they were after it; nothing changes where they are as relaxed already."""
    previous = gc.get_threshold()
    if previous[0] >= GC_THRESHOLDS[0]:
        yield
        return
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


__all__ = ["GC_THRESHOLDS", "relaxed_gc", "tune_gc"]
