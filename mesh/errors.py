"""The one error tree of mesh: every error mesh raises on purpose is defined here.

Every error a user can meet is a ``MeshError`` carrying a one-line message and a ``retriable``
flag (so retries and circuit breakers count only what they should)::

    MeshError
    ├── ConfigError            settings, flags or a declaration file is wrong
    │   ├── TopicSpecError     topics/*.yaml is malformed or violates a rule
    │   ├── PlanTemplateError  a planner template is malformed or cannot be applied to a request
    │   └── ExpressionError    a filter expression (mesh tail/dlq --where) is malformed
    ├── BrokerError            talking to Kafka failed
    │   ├── BrokerUnavailable  nothing answered at the bootstrap servers (retriable)
    │   ├── AuthError          SASL/TLS login refused
    │   └── UnsupportedByBroker  the broker lacks an API we need (e.g. the embedded broker)
    ├── EmbeddedBrokerError    the embedded broker cannot start or be found
    ├── EventError             an event cannot be encoded or decoded
    │   ├── EventTooLarge
    │   ├── UnknownEventType
    │   ├── InvalidEvent
    │   └── MisplacedInput     a valid event on the wrong topic, key or partition (dead-lettered)
    ├── PlanningError          the Task Planner cannot plan a request; ``kind`` says why
    │   └── InvalidRequest     the request's own fields are wrong
    ├── DecisionError          an input the workflow aggregate cannot apply (dead-lettered)
    ├── PayloadError           a payload by reference cannot be used; ``kind`` says why
    │   ├── PayloadMissing     some of its chunks are not on the payload topic (any more)
    │   └── PayloadCorrupt     its chunks do not add up to its size and sha256 digest
    ├── UnknownWorkflow        workflow.events holds no history for the workflow id
    ├── UnknownTask            the workflow has no task of that id (or no such attempt)
    ├── WorkflowExists         a new plan names the id of a workflow that already started
    ├── NoAnswer               no component answered a client's call in time (retriable)
    ├── CallFailed             a component answered a client's call with an error
    │   └── RequestRejected    the Task Planner rejected a submitted request
    ├── TaskError              an agent function fails its attempt on purpose (the SDK's)
    ├── ArgvTemplateError      a command agent's argv template is malformed or names a missing value
    ├── TemplateRefused        an agent template or spawn config cannot make an agent
    ├── RegistrationRefused    a registry record the Agent Manager will not fold
    ├── LifecycleError         a spawn or terminate request cannot be carried out
    │   ├── UnknownAgent       no agent with that id runs where the Agent Manager can stop it
    │   └── SpawnFailed        an agent process exited or did not register in time (retriable)
    ├── BreakerOpen            a circuit breaker refused the call (retriable; a pybreaker error too)
    └── GuardedCallFailed      a guarded call returned a result that counts as failed (retriable)

``CallFailed`` and ``TaskError`` take ``retriable`` from whoever knows (the answering component,
the agent function); the others are fixed per class. Library errors are translated at the boundary
(``raise BrokerUnavailable(...) from exc``) so that a user sees what happened and what to do,
never a raw aiokafka traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pybreaker


class MeshError(Exception):
    """Base of every error mesh raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        if retriable is not None:
            self.retriable = retriable
        self.fields: dict[str, Any] = fields

    def __str__(self) -> str:
        return self.message


# -- configuration ---------------------------------------------------------------------------


class ConfigError(MeshError):
    """Settings, flags or a declaration file are wrong."""


class TopicSpecError(ConfigError):
    """A topic declaration is malformed or breaks a validation rule."""


class PlanTemplateError(ConfigError):
    """A planner template file is malformed (at load) or cannot be applied to a request (at plan
    time)."""


class ExpressionError(ConfigError):
    """A filter expression is malformed; the message points at the offending part."""


# -- the broker ------------------------------------------------------------------------------


class BrokerError(MeshError):
    """Talking to the Kafka cluster failed."""


class BrokerUnavailable(BrokerError):
    """No broker answered at the configured bootstrap servers."""

    retriable = True


class AuthError(BrokerError):
    """The cluster refused our credentials or TLS handshake."""


class UnsupportedByBroker(BrokerError):
    """The broker does not implement an API that the operation needs."""


class EmbeddedBrokerError(MeshError):
    """The embedded Tansu broker cannot be started, found or stopped."""


# -- events ----------------------------------------------------------------------------------


class EventError(MeshError):
    """An event cannot be encoded or decoded."""


class EventTooLarge(EventError):
    """An event's encoded size exceeds the configured limit."""


class UnknownEventType(EventError):
    """The ``type``/``schema_version`` pair names no known event model."""


class InvalidEvent(EventError):
    """The bytes or fields do not form a valid event of the named type."""


class MisplacedInput(EventError):
    """A valid event the Workflow Manager cannot take from where it was read: a type that does not
    belong on the topic, a record key that is not the event's workflow id, or a partition the
    key does not hash to (the workflow's state lives in the partition its id hashes to)."""


# -- planning --------------------------------------------------------------------------------

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

REJECTION_KINDS: tuple[RejectionKind, ...] = RejectionKind.__args__  # type: ignore[attr-defined]


class PlanningError(MeshError):
    """A request cannot be turned into a valid plan.

    It becomes a ``PlanRejected`` whose reason is one line that starts with the kind
    (``cycle: design → implement → design``), so a client can branch on it without parsing prose.
    """

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


# -- workflows -------------------------------------------------------------------------------


class DecisionError(MeshError):
    """An input the workflow cannot apply: unknown workflow or task, or an impossible transition.

    Not retriable: the same input against the same state always fails the same way, so the
    runtime sends it to the dead-letter topic. The message is one line (it becomes a DLQ header).
    """


class UnknownWorkflow(MeshError):
    """``workflow.events`` holds no history for this workflow id."""


class UnknownTask(MeshError):
    """The workflow has no task of that id, or the task no attempt of that number."""


class WorkflowExists(MeshError):
    """A plan to start names the id of a workflow that has already started (the Workflow
    Manager would ignore it as a repeat), so it is refused before it is published."""

    def __init__(self, workflow_id: str, status: str) -> None:
        super().__init__(
            f"workflow {workflow_id} already exists ({status}); a new plan needs a new id "
            f"(leave out --workflow-id for a fresh one), or see it with 'mesh status "
            f"{workflow_id}'",
            workflow_id=workflow_id,
            status=status,
        )


# -- the client ------------------------------------------------------------------------------


class NoAnswer(MeshError):
    """No component answered a call in time (none runs, or none reads this cluster/prefix)."""

    retriable = True


class CallFailed(MeshError):
    """The component answered a call with an error; ``kind`` is its error's class or kind."""

    def __init__(self, message: str, *, kind: str = "", retriable: bool = False) -> None:
        super().__init__(message, retriable=retriable)
        self.kind = kind


class RequestRejected(CallFailed):
    """The Task Planner answered a submitted request with ``PlanRejected``.

    ``kind`` is the reason's first word (a ``RejectionKind``); ``problems`` lists every problem.
    Not retriable: the same request is planned the same way. ``published`` False: the client
    found the same fault before publishing (the planner's own request analysis), so nothing was
    sent.
    """

    def __init__(
        self, request_id: str, reason: str, problems: Sequence[str] = (), *, published: bool = True
    ) -> None:
        outcome = "rejected" if published else "not submitted"
        super().__init__(
            f"request {request_id} {outcome}: {reason}", kind=reason.partition(":")[0].strip()
        )
        self.request_id = request_id
        self.reason = reason
        self.problems = tuple(problems)
        self.published = published


# -- agents ----------------------------------------------------------------------------------


class PayloadError(MeshError):
    """A payload by reference (``PayloadRef``) cannot be used; never silently replaced."""

    kind = "payload_error"


class PayloadMissing(PayloadError):
    """Some chunks of a referenced payload are not on the payload topic (never written, or
    removed by its retention)."""

    kind = "payload_missing"


class PayloadCorrupt(PayloadError):
    """A referenced payload's chunks do not join into its size and sha256 digest."""

    kind = "payload_corrupt"


class TaskError(MeshError):
    """Raise it from an agent function to fail the attempt on purpose, with a kind of your own.

    ``kind`` becomes the ``error_kind`` the retry policy matches; ``retriable`` (default False)
    says whether another attempt could succeed.
    """

    def __init__(self, message: str, *, kind: str = "task_error", retriable: bool = False) -> None:
        super().__init__(message, retriable=retriable)
        self.kind = kind


class ArgvTemplateError(MeshError):
    """A command agent's argv template is malformed or names a value the task does not have
    (reported as the attempt's ``bad_template`` failure)."""

    kind = "bad_template"
    retriable = False


class TemplateRefused(MeshError):
    """An agent template or a spawn request's config cannot make an agent (a caller error)."""

    retriable = False


class RegistrationRefused(MeshError):
    """A registry record the Agent Manager will not fold (the DLQ's error class)."""


class LifecycleError(MeshError):
    """A spawn or terminate request that cannot be carried out (answered as an error)."""


class UnknownAgent(LifecycleError):
    """No agent with that id runs where this Agent Manager can stop it."""


class SpawnFailed(LifecycleError):
    """An agent process exited or did not register in time."""

    retriable = True


# -- circuit breakers ------------------------------------------------------------------------


class BreakerOpen(pybreaker.CircuitBreakerError, MeshError):
    """The breaker refused the call: open, or half-open with its one trial in flight.

    Retriable: the same work may succeed elsewhere or later. Also a
    ``pybreaker.CircuitBreakerError``, as pybreaker's own refusal is.
    """

    retriable = True

    def __init__(self, name: str, message: str) -> None:
        MeshError.__init__(self, f"circuit breaker {name} {message}", retriable=True, name=name)


class GuardedCallFailed(MeshError):
    """A guarded call that returned, but whose result counts as a failure of the guarded service
    (what a breaker's ``judge`` gives for, e.g., an agent's infrastructure failure)."""

    retriable = True
