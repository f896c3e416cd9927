"""The error tree: every ``MeshError`` lives in ``mesh.errors``, under a name of its own, where the
module's drawing puts it, with the ``retriable`` flag retries and breakers rely on."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pybreaker
import pytest

import mesh
import mesh.agents
import mesh.client
from mesh import errors
from mesh.errors import (
    BreakerOpen,
    CallFailed,
    InvalidRequest,
    MeshError,
    PlanningError,
    RequestRejected,
    TaskError,
)


def _every_module() -> None:
    for info in pkgutil.walk_packages(mesh.__path__, "mesh."):
        if not info.name.endswith("__main__"):  # running it would start the CLI
            importlib.import_module(info.name)


def _subclasses(root: type[MeshError]) -> list[type[MeshError]]:
    found: list[type[MeshError]] = []
    for cls in root.__subclasses__():
        found += [cls, *_subclasses(cls)]
    return found


def _drawn() -> dict[str, str]:
    """Class → its parent, as the module docstring draws the tree (indent = depth)."""
    parents: dict[str, str] = {}
    stack = ["MeshError"]
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^\s*((?:│   |    )*)[├└]── (\w+)", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 4 + 1
        del stack[depth:]
        parents[match.group(2)] = stack[-1]
        stack.append(match.group(2))
    return parents


def test_every_mesh_error_is_defined_in_mesh_errors_under_a_distinct_name() -> None:
    _every_module()
    classes = _subclasses(MeshError)
    assert len(classes) > 20  # the walk found the tree, so the checks below are not vacuous
    assert sorted(c.__qualname__ for c in classes if c.__module__ != "mesh.errors") == []
    names = [c.__name__ for c in set(classes)]
    assert sorted(n for n in names if names.count(n) > 1) == []


def test_the_docstring_draws_the_tree_as_it_is() -> None:
    drawn = _drawn()
    actual = {
        cls.__name__: next(b for b in cls.__mro__[1:] if issubclass(b, MeshError)).__name__
        for cls in _subclasses(MeshError)
        if cls.__module__ == "mesh.errors"
    }
    assert drawn == actual


@pytest.mark.parametrize(
    ("name", "retriable"),
    [
        ("BrokerUnavailable", True),
        ("NoAnswer", True),
        ("SpawnFailed", True),
        ("BreakerOpen", True),
        ("GuardedCallFailed", True),
        ("ConfigError", False),
        ("AuthError", False),
        ("EventError", False),
        ("MisplacedInput", False),
        ("DecisionError", False),
        ("UnknownWorkflow", False),
        ("ArgvTemplateError", False),
        ("TemplateRefused", False),
        ("RegistrationRefused", False),
        ("UnknownAgent", False),
    ],
)
def test_retriable_is_fixed_per_class_where_the_class_decides(name: str, retriable: bool) -> None:
    cls = getattr(errors, name)
    made = cls("agent:a", "is open") if cls is BreakerOpen else cls("x")
    assert (cls.retriable, made.retriable) == (retriable, retriable)


def test_retriable_comes_from_whoever_knows_where_the_class_cannot() -> None:
    assert CallFailed("x", retriable=True).retriable is True
    assert CallFailed("x").retriable is False
    assert TaskError("x", retriable=True).retriable is True
    assert TaskError("x").retriable is False
    assert PlanningError("cycle", "a → b → a").retriable is False
    assert InvalidRequest(["bad deadline", "bad budget"]).reason == (
        "invalid_request: bad deadline (and 1 more)"
    )


def test_a_rejected_request_is_a_call_failure_with_the_planners_kind_and_problems() -> None:
    rejected = RequestRejected("req-1", "cycle: a → b → a", ["a needs b", "b needs a"])
    assert isinstance(rejected, CallFailed)
    assert (rejected.kind, rejected.retriable) == ("cycle", False)
    assert rejected.problems == ("a needs b", "b needs a")
    assert str(rejected) == "request req-1 rejected: cycle: a → b → a"


def test_an_open_breaker_is_a_pybreaker_error_too() -> None:
    refused = BreakerOpen("agent:a", "is open")
    assert isinstance(refused, pybreaker.CircuitBreakerError)
    assert str(refused) == "circuit breaker agent:a is open"
    assert refused.fields == {"name": "agent:a"}


def test_public_names_are_the_classes_of_the_tree() -> None:
    """The names users rely on stay importable where the README shows them."""
    assert mesh.CallFailed is mesh.client.CallFailed is CallFailed
    assert mesh.NoAnswer is mesh.client.NoAnswer is errors.NoAnswer
    assert mesh.TaskError is mesh.agents.TaskError is TaskError
