"""``mesh dev``: the whole mesh on one machine (embedded broker, components, demo agents)."""

from mesh.dev._dev import DevMesh, DevOptions, dev_capability_map

__all__ = ["DevMesh", "DevOptions", "dev_capability_map"]
