"""The public surface of ``mesh`` is deliberate (after httpx's test_exported_members)."""

from __future__ import annotations

import mesh


def test_all_is_sorted_and_complete() -> None:
    assert mesh.__all__ == sorted(mesh.__all__)
    exported = {name for name in dir(mesh) if not name.startswith("_")}
    # Subpackages appear as attributes once imported; only the listed names are the API.
    missing = [name for name in mesh.__all__ if not hasattr(mesh, name)]
    assert missing == []
    assert set(mesh.__all__) <= exported


def test_public_names_are_pinned() -> None:
    assert mesh.__all__ == [
        "AuthError",
        "BrokerError",
        "BrokerUnavailable",
        "CallFailed",
        "Client",
        "ConfigError",
        "EmbeddedBroker",
        "EmbeddedBrokerError",
        "EventError",
        "EventTooLarge",
        "InvalidEvent",
        "MeshError",
        "NoAnswer",
        "Settings",
        "TaskContext",
        "TaskError",
        "TopicSpecError",
        "UnknownEventType",
        "UnsupportedByBroker",
        "WorkflowRun",
        "agent",
        "load_plan_file",
        "send_command",
        "submit_plan",
    ]
