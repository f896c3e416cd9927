"""What an agent says about its host when it registers and in heartbeats."""

from __future__ import annotations

import importlib.metadata
import os
import socket

from mesh.events import Resources


def host_resources() -> Resources:
    """What this host offers: CPU cores and physical memory (zero where the OS will not say)."""
    return Resources(cpu=float(_cpu_count()), memory_mb=_memory_mb("SC_PHYS_PAGES"))


def free_resources() -> Resources:
    """What is free now: cores not busy by the 1-minute load average, available memory."""
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return Resources(
        cpu=max(0.0, float(_cpu_count()) - busy), memory_mb=_memory_mb("SC_AVPHYS_PAGES")
    )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 0


def _memory_mb(pages_name: str) -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf(pages_name) // (1024 * 1024))
    except (ValueError, OSError, AttributeError):
        return 0


def mesh_version() -> str:
    """The software version an agent registers, e.g. ``mesh 0.1.0``."""
    try:
        return f"mesh {importlib.metadata.version('mesh')}"
    except importlib.metadata.PackageNotFoundError:
        return "mesh"


def host_name() -> str:
    """The host name as an id (no whitespace, at most 200 characters)."""
    return "".join(socket.gethostname().split())[:200] or "localhost"


__all__ = ["free_resources", "host_name", "host_resources", "mesh_version"]
