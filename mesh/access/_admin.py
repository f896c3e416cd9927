"""ACLs on the cluster: read the declared principals' bindings, add and remove them (aiokafka
has no ACL API: its protocol requests are sent as they are, one binding per request)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest,
    DeleteAclsRequest,
    DescribeAclsRequest,
    DescribeClientQuotasRequest,
)

from mesh.access._model import (
    ALLOW,
    AccessDeclarations,
    AccessPlan,
    Acl,
    AclChange,
    AclChangeKind,
    Operation,
    Pattern,
    QuotaChange,
    Resource,
    diff_acls,
    diff_quotas,
    quota_users,
)
from mesh.access._quota_protocol import AlterClientQuotasRequest
from mesh.errors import BrokerError
from mesh.kafka.connection import kafka_errors, open_admin
from mesh.settings import Settings

_OK = 0
_SECURITY_DISABLED = 54
_ANY_HOST = "*"


async def read_acls(
    admin: AIOKafkaAdminClient, settings: Settings, principal: str | None
) -> list[Acl]:
    """Every ALLOW binding of ``principal`` (None: of anyone) for any host."""
    request = DescribeAclsRequest(
        Resource.ANY,
        None,
        Pattern.ANY,
        principal,
        None,
        Operation.ANY,
        ALLOW,
    )
    with kafka_errors(settings, "describe ACLs"):
        response = await admin._send_request(request)
    answer = response.to_object()
    _raise_for(answer["error_code"], answer["error_message"], "describe ACLs")
    found: list[Acl] = []
    for resource in answer["resources"]:
        for acl in resource["acls"]:
            if acl["host"] != _ANY_HOST:
                continue  # host-bound bindings are not mesh's: never planned, never removed
            found.append(
                Acl(
                    acl["principal"],
                    Resource(resource["resource_type"]),
                    resource["resource_name"],
                    Pattern(resource["resource_pattern_type"]),
                    Operation(acl["operation"]),
                )
            )
    return found


async def read_prefix_acls(settings: Settings) -> list[Acl]:
    """Every principal's ALLOW bindings for any host on resources under the prefix, and their
    cluster IDEMPOTENT_WRITE (what ``mesh access export`` writes)."""
    async with open_admin(settings) as admin:
        every = await read_acls(admin, settings, None)
    prefix = settings.topic_prefix
    under = [a for a in every if a.resource is not Resource.CLUSTER and a.name.startswith(prefix)]
    principals = {a.principal for a in under}
    cluster = [
        a
        for a in every
        if a.resource is Resource.CLUSTER
        and a.operation is Operation.IDEMPOTENT_WRITE
        and a.principal in principals
    ]
    return under + cluster


async def plan_access(settings: Settings, declared: AccessDeclarations) -> AccessPlan:
    async with open_admin(settings) as admin:
        return await _plan(admin, settings, declared)


async def _plan(
    admin: AIOKafkaAdminClient, settings: Settings, declared: AccessDeclarations
) -> AccessPlan:
    observed: list[Acl] = []
    for principal in declared.principals:
        observed.extend(await read_acls(admin, settings, principal))
    plan = diff_acls(declared, observed, prefix=settings.topic_prefix)
    quotas = {user: await read_quotas(admin, settings, user) for user in quota_users(declared)}
    return replace(plan, changes=(*plan.changes, *diff_quotas(declared, quotas)))


async def read_quotas(
    admin: AIOKafkaAdminClient, settings: Settings, user: str
) -> dict[str, float]:
    """The quotas set for exactly this user (not the defaults it may fall back on)."""
    exact = 0
    request = DescribeClientQuotasRequest([("user", exact, user)], True)
    with kafka_errors(settings, "describe client quotas"):
        response = await admin._send_request(request)
    answer = response.to_object()
    _raise_for(answer["error_code"], answer["error_message"], "describe client quotas")
    found: dict[str, float] = {}
    for entry in answer["entries"] or ():
        for value in entry["values"]:
            found[value["name"]] = float(value["value"])
    return found


async def apply_access(
    settings: Settings,
    declared: AccessDeclarations,
    *,
    dry_run: bool = False,
    on_change: Callable[[AclChange | QuotaChange], None] | None = None,
) -> tuple[AccessPlan, list[AclChange | QuotaChange]]:
    """Make the declared principals' bindings under the prefix match; each change's outcome
    (``applied`` or ``failed`` with the brokers' reason), the others going on after one fails."""
    async with open_admin(settings) as admin:
        plan = await _plan(admin, settings, declared)
        if dry_run:
            return plan, list(plan.changes)
        outcomes: list[AclChange | QuotaChange] = []
        for change in plan.changes:
            try:
                await _make(admin, settings, change)
                outcome = replace(change, status="applied")
            except BrokerError as exc:
                outcome = replace(change, status="failed", reason=str(exc))
            outcomes.append(outcome)
            if on_change is not None:
                on_change(outcome)
        return plan, outcomes


async def _make(
    admin: AIOKafkaAdminClient, settings: Settings, change: AclChange | QuotaChange
) -> None:
    if isinstance(change, QuotaChange):
        request = AlterClientQuotasRequest(change.user, [(change.key, change.new)])
        with kafka_errors(settings, "alter client quotas"):
            response = await admin._send_request(request)
        for answer in response.to_object()["entries"]:
            _raise_for(answer["error_code"], answer["error_message"], "alter client quotas")
        return
    acl = change.acl
    fields = (acl.resource, acl.name, acl.pattern, acl.principal, _ANY_HOST, acl.operation, ALLOW)
    if change.kind is AclChangeKind.ADD:
        with kafka_errors(settings, "create ACLs"):
            response = await admin._send_request(CreateAclsRequest(*fields))
        answers: Iterable[dict[str, Any]] = response.to_object()["creation_responses"]
        for answer in answers:
            _raise_for(answer["error_code"], answer["error_message"], "create the ACL")
        return
    with kafka_errors(settings, "delete ACLs"):
        response = await admin._send_request(DeleteAclsRequest(*fields))
    for answer in response.to_object()["filter_responses"]:
        _raise_for(answer["error_code"], answer["error_message"], "delete the ACL")


def _raise_for(code: int, message: str | None, action: str) -> None:
    if code == _OK:
        return
    if code == _SECURITY_DISABLED:
        raise BrokerError(
            f"could not {action}: the cluster has no authorizer (set authorizer.class.name, "
            "e.g. org.apache.kafka.metadata.authorizer.StandardAuthorizer)"
        )
    name = getattr(for_code(code), "message", None) or for_code(code).__name__
    text = (message or "").strip().splitlines()[0] if (message or "").strip() else name
    raise BrokerError(f"could not {action}: {name}: {text}")
