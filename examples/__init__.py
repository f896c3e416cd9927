"""Examples of using mesh (importable from the repository root, e.g. ``examples.agents``)."""
