"""ACLs as code, the pure part: declarations per component, the bindings they mean, and the
plan that reconciles them with the bindings the cluster holds.

A component's declaration names the principal it runs as and exactly what it may do. Every
resource name is logical and gets the topic prefix, so one file serves every mesh on a cluster:

- ``topics: {read, write, describe}``: topic names, LITERAL (``name*`` is PREFIXED);
- ``groups``: consumer group ids, PREFIXED (``workflows`` covers ``<prefix>workflows-…``);
- ``transactional_ids``: PREFIXED, WRITE (a transactional producer's id);
- ``idempotent_write``: the cluster-wide IDEMPOTENT_WRITE an idempotent producer needs.

Reconciling looks only at the declared principals' ALLOW bindings on resources under the prefix
(plus their cluster IDEMPOTENT_WRITE): another principal's ACLs, and a declared principal's
ACLs on other prefixes, are never read into the plan, so never changed. The prefix must end
with a separator, or nothing is removed (``team1`` would also match ``team1x.``'s ACLs). The
cluster-wide IDEMPOTENT_WRITE is added when declared but never removed: it is not under the
prefix, and another mesh may rely on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class Resource(IntEnum):
    """Kafka's ACL resource types (the wire codes)."""

    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class Pattern(IntEnum):
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


ALLOW = 3
CLUSTER_NAME = "kafka-cluster"
SEPARATORS = "._-"
_LABEL = {
    Resource.TOPIC: "topic",
    Resource.GROUP: "group",
    Resource.CLUSTER: "cluster",
    Resource.TRANSACTIONAL_ID: "transactional id",
}


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW binding for any host: principal may do operation on the resource."""

    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    def __str__(self) -> str:
        what = f"{_LABEL[self.resource]} {self.name!r}"
        if self.pattern is Pattern.PREFIXED:
            what = f"{_LABEL[self.resource]}s starting with {self.name!r}"
        return f"{self.principal} may {self.operation.name} {what}"

    def as_dict(self) -> dict[str, str]:
        return {
            "principal": self.principal,
            "resource": self.resource.name.lower(),
            "name": self.name,
            "pattern": self.pattern.name.lower(),
            "operation": self.operation.name,
        }


@dataclass(frozen=True)
class ComponentAccess:
    """What one component may do, as declared (logical names)."""

    component: str
    principal: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    describe: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    transactional_ids: tuple[str, ...] = ()
    idempotent_write: bool = False
    quotas: Mapping[str, float] | None = None
    """Client quotas of the principal's user (``QUOTA_KEYS``); None: not managed."""

    def acls(self, prefix: str) -> set[Acl]:
        """The bindings this declaration means under ``prefix``."""
        found: set[Acl] = set()
        for names, operation in (
            (self.read, Operation.READ),
            (self.write, Operation.WRITE),
            (self.describe, Operation.DESCRIBE),
        ):
            for name in names:
                pattern = Pattern.PREFIXED if name.endswith("*") else Pattern.LITERAL
                full = prefix + name.rstrip("*")
                found.add(Acl(self.principal, Resource.TOPIC, full, pattern, operation))
        for group in self.groups:
            found.add(
                Acl(
                    self.principal, Resource.GROUP, prefix + group, Pattern.PREFIXED, Operation.READ
                )
            )
        for tid in self.transactional_ids:
            found.add(
                Acl(
                    self.principal,
                    Resource.TRANSACTIONAL_ID,
                    prefix + tid,
                    Pattern.PREFIXED,
                    Operation.WRITE,
                )
            )
        if self.idempotent_write:
            found.add(
                Acl(
                    self.principal,
                    Resource.CLUSTER,
                    CLUSTER_NAME,
                    Pattern.LITERAL,
                    Operation.IDEMPOTENT_WRITE,
                )
            )
        return found


class AclChangeKind(StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class AclChange:
    kind: AclChangeKind
    acl: Acl
    status: str = "planned"
    reason: str | None = None

    def __str__(self) -> str:
        sign = "+" if self.kind is AclChangeKind.ADD else "-"
        line = f"{sign} {self.kind} ACL: {self.acl}"
        return line if self.reason is None else f"{line} ({self.status}: {self.reason})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "status": self.status,
            "reason": self.reason,
            "acl": self.acl.as_dict(),
        }


QUOTA_KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage")
"""The client quotas managed per user: bytes/s produced and fetched, % of a request thread."""


@dataclass(frozen=True)
class QuotaChange:
    """One quota of one user set to ``new``, or removed (``new`` None)."""

    user: str
    key: str
    old: float | None
    new: float | None
    status: str = "planned"
    reason: str | None = None

    @property
    def kind(self) -> str:
        return "set_quota" if self.new is not None else "remove_quota"

    def __str__(self) -> str:
        old = "(unset)" if self.old is None else f"{self.old:g}"
        new = "(removed)" if self.new is None else f"{self.new:g}"
        line = f"~ quota of User:{self.user}: {self.key} {old} → {new}"
        return line if self.reason is None else f"{line} ({self.status}: {self.reason})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "quota": {"user": self.user, "key": self.key, "old": self.old, "new": self.new},
        }


@dataclass(frozen=True)
class AccessPlan:
    prefix: str
    changes: tuple[AclChange | QuotaChange, ...]
    notes: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not self.changes

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "in_sync": self.in_sync,
            "changes": [c.as_dict() for c in self.changes],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class AccessDeclarations:
    components: tuple[ComponentAccess, ...] = field(default_factory=tuple)

    @property
    def principals(self) -> list[str]:
        return sorted({c.principal for c in self.components})

    def acls(self, prefix: str) -> set[Acl]:
        return {acl for c in self.components for acl in c.acls(prefix)}


def managed(acl: Acl, prefix: str) -> bool:
    """Whether reconciling under ``prefix`` may look at (and so remove) this binding."""
    if acl.resource is Resource.CLUSTER:
        return False  # added when declared, never removed (see the module docstring)
    return bool(prefix) and prefix[-1] in SEPARATORS and acl.name.startswith(prefix)


def diff_acls(declared: AccessDeclarations, observed: Iterable[Acl], *, prefix: str) -> AccessPlan:
    """Bindings to add (declared, absent) and remove (present under the prefix for a declared
    principal, not declared)."""
    wanted = declared.acls(prefix)
    principals = set(declared.principals)
    present = {a for a in observed if a.principal in principals}
    changes = [AclChange(AclChangeKind.ADD, acl) for acl in sorted(wanted - present)]
    extra = sorted(a for a in present - wanted if managed(a, prefix))
    changes.extend(AclChange(AclChangeKind.REMOVE, acl) for acl in extra)
    notes: list[str] = []
    if not prefix or prefix[-1] not in SEPARATORS:
        notes.append(
            f"the prefix {prefix!r} does not end with '.', '_' or '-': no ACL is removed (it "
            "would also match other prefixes' resources)"
        )
    return AccessPlan(prefix, tuple(changes), tuple(notes))


def quota_users(declared: AccessDeclarations) -> list[str]:
    """The users whose quotas are managed: components with a ``quotas`` section."""
    return sorted(
        {
            c.principal.removeprefix("User:")
            for c in declared.components
            if c.quotas is not None and c.principal.startswith("User:")
        }
    )


def diff_quotas(
    declared: AccessDeclarations, observed: Mapping[str, Mapping[str, float]]
) -> list[QuotaChange]:
    """Each managed user's quotas set to the declared values; a quota set but not declared is
    removed. Users without a ``quotas`` section are not looked at."""
    changes: list[QuotaChange] = []
    for component in declared.components:
        if component.quotas is None or not component.principal.startswith("User:"):
            continue
        user = component.principal.removeprefix("User:")
        have = observed.get(user, {})
        for key in QUOTA_KEYS:
            want, old = component.quotas.get(key), have.get(key)
            if want != old:
                changes.append(QuotaChange(user, key, old, want))
    return changes


def parse_access(raw: Mapping[str, Any], where: str) -> AccessDeclarations:
    """Declarations from one file's YAML (``components: {name: {...}}``); ValueError with the
    file and component on a mistake."""
    components = raw.get("components") if isinstance(raw, Mapping) else None
    if not isinstance(components, Mapping):
        raise ValueError(f"{where}: expected a 'components' mapping")
    found: list[ComponentAccess] = []
    allowed = {"principal", "topics", "groups", "transactional_ids", "idempotent_write", "quotas"}
    for name, body in components.items():
        if not isinstance(body, Mapping):
            raise ValueError(f"{where}: component {name!r}: expected a mapping")
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(
                f"{where}: component {name!r}: unknown keys {sorted(unknown)} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        principal = body.get("principal")
        if not isinstance(principal, str) or ":" not in principal:
            raise ValueError(
                f"{where}: component {name!r}: principal must be like 'User:mesh-{name}'"
            )
        topics = body.get("topics") or {}
        if not isinstance(topics, Mapping) or set(topics) - {"read", "write", "describe"}:
            raise ValueError(
                f"{where}: component {name!r}: topics takes read, write and describe lists"
            )
        found.append(
            ComponentAccess(
                component=str(name),
                principal=principal,
                read=_names(topics.get("read"), where, name),
                write=_names(topics.get("write"), where, name),
                describe=_names(topics.get("describe"), where, name),
                groups=_names(body.get("groups"), where, name),
                transactional_ids=_names(body.get("transactional_ids"), where, name),
                idempotent_write=bool(body.get("idempotent_write", False)),
                quotas=_quotas(body.get("quotas", None) if "quotas" in body else None, where, name),
            )
        )
    return AccessDeclarations(tuple(found))


def _names(value: Any, where: str, component: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: component {component!r}: expected a list of names")
    return tuple(value)


def _quotas(value: Any, where: str, component: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - set(QUOTA_KEYS):
        raise ValueError(f"{where}: component {component!r}: quotas takes {', '.join(QUOTA_KEYS)}")
    found: dict[str, float] = {}
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
            raise ValueError(
                f"{where}: component {component!r}: quota {key} must be a positive number"
            )
        found[str(key)] = float(number)
    return found


def export_components(acls: Iterable[Acl], prefix: str) -> tuple[dict[str, Any], list[Acl]]:
    """The ``components`` mapping (logical names) that declares ``acls`` under ``prefix``, one
    component per principal, and the bindings it cannot express (left out, to be listed)."""
    components: dict[str, dict[str, Any]] = {}
    left_out: list[Acl] = []
    verbs = {Operation.READ: "read", Operation.WRITE: "write", Operation.DESCRIBE: "describe"}
    for acl in sorted(acls):
        name = acl.principal.split(":", 1)[-1]
        body = components.setdefault(name, {"principal": acl.principal})
        logical = acl.name[len(prefix) :]
        under = acl.name.startswith(prefix) and bool(logical)
        if acl.resource is Resource.TOPIC and acl.operation in verbs and under:
            topic = logical + ("*" if acl.pattern is Pattern.PREFIXED else "")
            body.setdefault("topics", {}).setdefault(verbs[acl.operation], []).append(topic)
        elif (
            acl.resource is Resource.GROUP
            and acl.operation is Operation.READ
            and acl.pattern is Pattern.PREFIXED
            and under
        ):
            body.setdefault("groups", []).append(logical)
        elif (
            acl.resource is Resource.TRANSACTIONAL_ID
            and acl.operation is Operation.WRITE
            and acl.pattern is Pattern.PREFIXED
            and under
        ):
            body.setdefault("transactional_ids", []).append(logical)
        elif acl.resource is Resource.CLUSTER and acl.operation is Operation.IDEMPOTENT_WRITE:
            body["idempotent_write"] = True
        else:
            left_out.append(acl)
    return {k: v for k, v in components.items() if len(v) > 1}, left_out
