"""``mesh dev``: the whole mesh on one machine (embedded broker, components, demo agents)."""

from mesh.dev._dev import DevMesh, DevOptions

__all__ = ["DevMesh", "DevOptions"]
