"""``mesh access`` on real Apache Kafka with the KRaft StandardAuthorizer on (a second broker,
started for this module only): plan, apply and check a component's ACLs, never touching
another principal's or another prefix's; a client beyond its grant says what is missing; the
shipped ``access/`` grants run the diamond with every component as its own user.

The PLAINTEXT listener is the super user (``User:ANONYMOUS``), as an operator's admin login
would be (``mesh-admin`` is one too, for the dev mesh's topics); the components log in over
SASL_PLAINTEXT with SCRAM as their own users.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.protocol.admin import CreateAclsRequest
from pydantic import SecretStr

from mesh.access import Acl, Operation, Pattern, Resource, read_acls, read_quotas
from mesh.access._quota_protocol import AlterClientQuotasRequest
from mesh.kafka.connection import open_admin
from mesh.settings import Settings
from tests._fixtures.kafka import _started
from tests.contract.task_path import check_diamond
from tests.helpers import Run, assert_one_line_error, run_mesh
from tooling.kafka.kafka_broker import ApacheKafka

SHIPPED_TOPICS = Path(__file__).resolve().parents[2] / "topics"
SHIPPED_ACCESS = Path(__file__).resolve().parents[2] / "access"
ADMIN = "mesh-admin"
AUTHORIZER = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": f"User:ANONYMOUS;User:{ADMIN}",
}
ROLES = {  # DevOptions.logins role: the user of the shipped access file it runs as
    "workflows": "mesh-workflows",
    "agent-manager": "mesh-agent-manager",
    "planner": "mesh-planner",
    "resources": "mesh-resources",
    "agent": "mesh-agent",
}
CLIENT = "mesh-client"
ACCESS = """
components:
  client:
    principal: User:client
    topics:
      read: [replies, plans, workflow.events, workflow.state]  # submit checks the id is new
    idempotent_write: true
"""


@pytest.fixture(scope="module")
def secured_kafka(request: pytest.FixtureRequest) -> Iterator[ApacheKafka]:
    kafka = _started(
        request,
        "Apache Kafka with the StandardAuthorizer",
        ApacheKafka(
            users=("client", "outsider", ADMIN, CLIENT, *ROLES.values()), properties=AUTHORIZER
        ),
    )
    try:
        yield kafka
    finally:
        kafka.stop()


def admin_env(kafka: ApacheKafka, prefix: str) -> dict[str, str]:
    return {"MESH_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "MESH_TOPIC_PREFIX": prefix}


def access(kafka: ApacheKafka, prefix: str, directory: Path, *args: str) -> Run:
    return run_mesh("access", *args, "--dir", str(directory), env=admin_env(kafka, prefix))


def user_settings(kafka: ApacheKafka, prefix: str, user: str) -> Settings:
    """Settings of ``user`` logging in with SCRAM on the SASL_PLAINTEXT listener."""
    env = kafka.client_env("SASL_PLAINTEXT", user=user)
    fields: dict[str, Any] = {name.removeprefix("MESH_").lower(): v for name, v in env.items()}
    return Settings(**fields, topic_prefix=prefix)


async def grant_by_hand(settings: Settings, acl: Acl) -> None:
    async with open_admin(settings) as admin:
        request = CreateAclsRequest(
            acl.resource, acl.name, acl.pattern, acl.principal, "*", acl.operation, 3
        )
        response = await admin._send_request(request)
        assert [r[0] for r in response.creation_responses] == [0]


async def acls_of(settings: Settings, principal: str) -> set[Acl]:
    async with open_admin(settings) as admin:
        return set(await read_acls(admin, settings, principal))


async def test_access_plan_apply_check_within_the_prefix(
    secured_kafka: ApacheKafka, topic_prefix: str, tmp_path: Path
) -> None:
    settings = Settings(
        bootstrap_servers=secured_kafka.bootstrap_servers, topic_prefix=topic_prefix
    )
    directory = tmp_path / "access"
    directory.mkdir()
    (directory / "components.yaml").write_text(ACCESS)
    topics = tmp_path / "topics"
    shutil.copytree(SHIPPED_TOPICS, topics)
    created = run_mesh(
        "topics", "apply", "--dir", str(topics), env=admin_env(secured_kafka, topic_prefix)
    )
    assert created.code == 0, created.stderr

    requests, replies = f"{topic_prefix}requests", f"{topic_prefix}replies"
    outsiders = Acl("User:outsider", Resource.TOPIC, replies, Pattern.LITERAL, Operation.READ)
    elsewhere = Acl(
        "User:client", Resource.TOPIC, f"other-{replies}", Pattern.LITERAL, Operation.WRITE
    )
    await grant_by_hand(settings, outsiders)
    await grant_by_hand(settings, elsewhere)

    plan = access(secured_kafka, topic_prefix, directory, "plan", "--json")
    assert plan.code == 0, plan.stderr
    added = {
        (c["kind"], c["acl"]["operation"], c["acl"]["name"])
        for c in json.loads(plan.stdout)["changes"]
    }
    assert added == {
        ("add", "READ", replies),
        ("add", "READ", f"{topic_prefix}plans"),
        ("add", "READ", f"{topic_prefix}workflow.events"),
        ("add", "READ", f"{topic_prefix}workflow.state"),
        ("add", "IDEMPOTENT_WRITE", "kafka-cluster"),
    }
    assert access(secured_kafka, topic_prefix, directory, "check").code == 2

    applied = access(secured_kafka, topic_prefix, directory, "apply")
    assert applied.code == 0, applied.stderr
    assert "applied 5 changes" in applied.stdout
    assert access(secured_kafka, topic_prefix, directory, "check").code == 0

    # Beyond its grant (no WRITE on requests): the client says which ACL is missing, one line.
    client_env = {
        **secured_kafka.client_env("SASL_PLAINTEXT", user="client"),
        "MESH_TOPIC_PREFIX": topic_prefix,
    }
    refused = run_mesh(
        "submit", "--type", "bugfix", "--description", "x", env=client_env, timeout=60
    )
    line = assert_one_line_error(refused)
    assert f"User:client may not WRITE topic '{requests}'" in line, line

    # A grant made by hand under the prefix is drift and apply removes it; the outsider's ACL
    # and the client's ACL on another prefix are never touched.
    extra = Acl("User:client", Resource.TOPIC, requests, Pattern.LITERAL, Operation.WRITE)
    await grant_by_hand(settings, extra)
    drift = access(secured_kafka, topic_prefix, directory, "check", "--json")
    assert drift.code == 2
    (change,) = json.loads(drift.stdout)["changes"]
    assert (change["kind"], change["acl"]["name"], change["acl"]["operation"]) == (
        "remove",
        requests,
        "WRITE",
    )
    assert access(secured_kafka, topic_prefix, directory, "apply").code == 0
    assert access(secured_kafka, topic_prefix, directory, "check").code == 0
    assert extra not in await acls_of(settings, "User:client")
    assert elsewhere in await acls_of(settings, "User:client")
    assert await acls_of(settings, "User:outsider") == {outsiders}

    # Export: the ACLs under the prefix (the client's and the outsider's) as declarations
    # that plan finds in sync; the client's ACL on another prefix is not exported.
    adopted = tmp_path / "adopted"
    exported = run_mesh(
        "access", "export", "--out", str(adopted), env=admin_env(secured_kafka, topic_prefix)
    )
    assert exported.code == 0, exported.stderr
    assert "exported the ACLs of 2 principals" in exported.stdout
    document = yaml.safe_load((adopted / "exported.yaml").read_text())
    assert document["components"]["outsider"] == {
        "principal": "User:outsider",
        "topics": {"read": ["replies"]},
    }
    assert f"other-{replies}" not in (adopted / "exported.yaml").read_text()
    in_sync = access(secured_kafka, topic_prefix, adopted, "plan")
    assert in_sync.code == 0, in_sync.stderr
    assert "no changes" in in_sync.stdout


async def test_quotas_plan_apply_check_for_declared_users_only(
    secured_kafka: ApacheKafka, topic_prefix: str, tmp_path: Path
) -> None:
    """Quotas of a declared user are set and then changed to the declaration; a quota set by
    hand on it is drift and removed; another user's quota is never touched."""
    settings = Settings(
        bootstrap_servers=secured_kafka.bootstrap_servers, topic_prefix=topic_prefix
    )
    directory = tmp_path / "access"
    directory.mkdir()
    declared = directory / "components.yaml"
    declared.write_text(
        "components:\n  client:\n    principal: User:client\n"
        "    quotas: {producer_byte_rate: 1048576, request_percentage: 50}\n"
    )
    await set_quota(settings, "outsider", "consumer_byte_rate", 2048.0)

    plan = access(secured_kafka, topic_prefix, directory, "plan", "--json")
    assert plan.code == 0, plan.stderr
    quotas = {c["quota"]["key"]: c["quota"]["new"] for c in json.loads(plan.stdout)["changes"]}
    assert quotas == {"producer_byte_rate": 1048576.0, "request_percentage": 50.0}
    assert access(secured_kafka, topic_prefix, directory, "apply").code == 0
    assert access(secured_kafka, topic_prefix, directory, "check").code == 0
    assert await quotas_of(settings, "client") == quotas

    await set_quota(settings, "client", "consumer_byte_rate", 4096.0)
    drift = access(secured_kafka, topic_prefix, directory, "check")
    assert drift.code == 2
    assert "~ quota of User:client: consumer_byte_rate 4096 → (removed)" in drift.stdout
    assert access(secured_kafka, topic_prefix, directory, "apply").code == 0
    assert await quotas_of(settings, "client") == quotas
    assert await quotas_of(settings, "outsider") == {"consumer_byte_rate": 2048.0}


async def set_quota(settings: Settings, user: str, key: str, value: float) -> None:
    async with open_admin(settings) as admin:
        response = await admin._send_request(AlterClientQuotasRequest(user, [(key, value)]))
        assert [entry[0] for entry in response.entries] == [0]


async def quotas_of(settings: Settings, user: str) -> dict[str, float]:
    async with open_admin(settings) as admin:
        return await read_quotas(admin, settings, user)


async def test_the_diamond_runs_with_each_component_under_its_own_grants(
    secured_kafka: ApacheKafka, topic_prefix: str, tmp_path: Path
) -> None:
    """The shipped ``access/`` grants, applied by the admin, are enough for the whole mesh:
    each component process and the client log in as their own SCRAM user and the diamond
    completes (replay equal to live, nothing dead-lettered). With one grant less (the Workflow
    Manager's WRITE on workflow.events), the Workflow Manager stops at the next plan with one
    line naming that ACL."""
    applied = access(secured_kafka, topic_prefix, SHIPPED_ACCESS, "apply")
    assert applied.code == 0, applied.stderr
    logins = {
        role: (user, SecretStr(secured_kafka.sasl_users[user])) for role, user in ROLES.items()
    }
    client = user_settings(secured_kafka, topic_prefix, CLIENT)
    await check_diamond(
        user_settings(secured_kafka, topic_prefix, ADMIN),
        exact_offsets=True,
        logins=logins,
        client=client,
    )

    narrowed = tmp_path / "access"
    narrowed.mkdir()
    declared = yaml.safe_load((SHIPPED_ACCESS / "components.yaml").read_text())
    declared["components"]["workflows"]["topics"]["write"].remove("workflow.events")
    (narrowed / "components.yaml").write_text(yaml.safe_dump(declared))
    removed = access(secured_kafka, topic_prefix, narrowed, "apply", "--json")
    assert removed.code == 0, removed.stderr
    changes = [
        (c["kind"], c["acl"]["principal"], c["acl"]["operation"], c["acl"]["name"])
        for c in json.loads(removed.stdout)["changes"]
    ]
    events = f"{topic_prefix}workflow.events"
    assert changes == [("remove", "User:mesh-workflows", "WRITE", events)]

    workflows_env = user_settings(secured_kafka, topic_prefix, ROLES["workflows"]).to_env()
    workflows = asyncio.create_task(
        asyncio.to_thread(run_mesh, "run", "workflows", env=workflows_env, timeout=90)
    )
    plan = str(SHIPPED_ACCESS.parent / "examples" / "diamond.yaml")
    submitted = await asyncio.to_thread(run_mesh, "submit", plan, env=client.to_env())
    assert submitted.code == 0, submitted.stderr
    stopped = await workflows
    # A component logs on stderr (JSON lines) up to its one error line, its last.
    assert stopped.code != 0, stopped.stderr
    assert "Traceback" not in stopped.stderr, stopped.stderr
    errors = [line for line in stopped.stderr_lines if line.startswith("mesh: error: ")]
    assert errors == stopped.stderr_lines[-1:], stopped.stderr
    assert f"User:mesh-workflows may not WRITE topic '{events}'" in errors[0], errors
