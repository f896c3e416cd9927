"""The planner's errors: one branch of the ``MeshError`` tree.

::

    MeshError
    ├── ConfigError
    │   └── TemplateError      a template file is malformed, or a template cannot be applied
    └── PlanningError          a request cannot be planned; ``kind`` says why (see KINDS)
        └── InvalidRequest     the request's own fields are wrong (kind ``invalid_request``)

A ``PlanningError`` becomes a ``PlanRejected`` with ``reason`` and ``problems``: the reason is
one line that starts with the kind (``cycle: design → implement → design``), so a client can
branch on it without parsing prose.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from mesh.errors import ConfigError, MeshError

RejectionKind = Literal[
    "invalid_request",
    "unknown_type",
    "no_method",
    "template",
    "depth_limit",
    "cycle",
    "missing_dependency",
    "duplicate_id",
    "unreachable",
    "unknown_capability",
    "deadline",
    "budget",
    "resources",
    "too_large",
    "internal",
]
"""Why a request was rejected; the first word of ``PlanRejected.reason``."""

KINDS: tuple[RejectionKind, ...] = RejectionKind.__args__  # type: ignore[attr-defined]


class TemplateError(ConfigError):
    """A template file is malformed (at load) or cannot be applied to a request (at plan time)."""


class PlanningError(MeshError):
    """A request cannot be turned into a valid plan."""

    def __init__(
        self, kind: RejectionKind, message: str, problems: Sequence[str] = (), **fields: object
    ) -> None:
        super().__init__(f"{kind}: {message}", retriable=False, **fields)
        self.kind: RejectionKind = kind
        self.problems = tuple(problems)

    @property
    def reason(self) -> str:
        """The one-line reason for ``PlanRejected.reason`` (``kind: what``)."""
        return self.message


class InvalidRequest(PlanningError):
    """The request's fields (requirements, constraints, deadline, context) are not usable."""

    def __init__(self, problems: Sequence[str]) -> None:
        first = problems[0] if problems else "the request is not valid"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__("invalid_request", f"{first}{more}", problems)
