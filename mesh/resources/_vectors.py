"""Resources as numpy vectors: one axis per resource, always in the same order.

The wire model (:class:`~mesh.events.Resources`) is convenient to read; vectors are what the
allocator computes with, so that fitting a request against every node, summing usage or taking a
dominant share is one array operation instead of five attribute lookups per node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import numpy as np
import numpy.typing as npt

from mesh.events import Resources, UnitCosts

Vector = npt.NDArray[np.float64]
"""A float64 array whose last axis is :data:`RESOURCES` (shape ``(5,)`` or ``(n, 5)``)."""

RESOURCES: Final = ("cpu", "memory_mb", "network_mbps", "storage_mb", "gpu")
"""Field names of :class:`Resources`, in vector order."""

LABELS: Final = ("CPU", "memory", "network", "storage", "GPU")
UNITS: Final = ("cores", "MiB", "Mbit/s", "MiB", "GPUs")
DIMS: Final = len(RESOURCES)
EPSILON: Final = 1e-9
"""Slack for float comparisons, so that 0.1 + 0.2 cores still fit in 0.3."""

_INTEGRAL = np.array([False, True, False, True, True])  # memory, storage and GPUs are whole


def zeros(rows: int | None = None) -> Vector:
    """A zero vector, or ``rows`` of them."""
    return np.zeros(DIMS if rows is None else (rows, DIMS), dtype=np.float64)


def to_vector(resources: Resources | UnitCosts) -> Vector:
    """The vector of a resources (or unit-cost) model."""
    return np.array([float(getattr(resources, name)) for name in RESOURCES], dtype=np.float64)


def stack(items: Iterable[Resources | UnitCosts]) -> Vector:
    """Many models as one ``(n, 5)`` matrix."""
    rows = [[float(getattr(item, name)) for name in RESOURCES] for item in items]
    return np.array(rows, dtype=np.float64).reshape(-1, DIMS)


def to_resources(vector: Vector) -> Resources:
    """The model of a vector; tiny negatives from float sums become zero, whole units round."""
    clean = np.where(np.abs(vector) < 1e-6, 0.0, np.maximum(vector, 0.0))
    clean = np.where(_INTEGRAL, np.rint(clean), clean)
    return Resources(
        cpu=round(float(clean[0]), 6),
        memory_mb=int(clean[1]),
        network_mbps=round(float(clean[2]), 6),
        storage_mb=int(clean[3]),
        gpu=int(clean[4]),
    )


def fits(need: Vector, free: Vector) -> bool:
    """True when ``need`` fits in ``free`` on every resource."""
    return bool(np.all(need <= free + EPSILON))


def dominant_share(used: Vector, total: Vector) -> float:
    """Largest fraction of any resource held (DRF's measure); resources nobody has are ignored.

    In Python floats (the same IEEE divisions numpy makes): on five numbers, numpy's per-call
    cost was most of a DRF turn."""
    shares = [u / t for u, t in zip(used.tolist(), total.tolist(), strict=True) if t > 0]
    return max(shares, default=0.0)


def amount(dim: int, value: float) -> str:
    """One resource amount for humans, e.g. ``4 CPU cores``, ``1 GPU`` or ``2048 MiB memory``."""
    number = f"{int(value)}" if float(value).is_integer() else f"{value:g}"
    one = float(value) == 1.0
    if RESOURCES[dim] == "cpu":
        return f"{number} CPU {'core' if one else 'cores'}"
    if RESOURCES[dim] == "gpu":
        return f"{number} {'GPU' if one else 'GPUs'}"
    return f"{number} {UNITS[dim]} {LABELS[dim]}"


def describe(vector: Vector) -> str:
    """The non-zero amounts of a vector, e.g. ``2 CPU cores, 4096 MiB memory`` (or ``nothing``)."""
    parts = [amount(i, float(v)) for i, v in enumerate(vector) if v > EPSILON]
    return ", ".join(parts) if parts else "nothing"
