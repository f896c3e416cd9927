"""ACLs as code without a broker: what a declaration means, and what reconciling may touch
(tests/kafka/test_access_kafka.py meets it on Kafka with the StandardAuthorizer)."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import pytest

from mesh.access import (
    Acl,
    AclChange,
    AclChangeKind,
    Operation,
    Pattern,
    Resource,
    diff_acls,
    diff_quotas,
    export_components,
    load_access,
    parse_access,
)
from mesh.topics import load_topics

ROOT = Path(__file__).resolve().parents[2]

RAW = {
    "components": {
        "workflows": {
            "principal": "User:mesh-workflows",
            "topics": {"read": ["requests"], "write": ["plans", "agents.*"]},
            "groups": ["workflows"],
            "transactional_ids": ["workflows"],
            "idempotent_write": True,
        }
    }
}
WHO = "User:mesh-workflows"


def test_a_declaration_means_prefixed_bindings() -> None:
    declared = parse_access(RAW, "access/mesh.yaml")
    assert declared.acls("p.") == {
        Acl(WHO, Resource.TOPIC, "p.requests", Pattern.LITERAL, Operation.READ),
        Acl(WHO, Resource.TOPIC, "p.plans", Pattern.LITERAL, Operation.WRITE),
        Acl(WHO, Resource.TOPIC, "p.agents.", Pattern.PREFIXED, Operation.WRITE),
        Acl(WHO, Resource.GROUP, "p.workflows", Pattern.PREFIXED, Operation.READ),
        Acl(WHO, Resource.TRANSACTIONAL_ID, "p.workflows", Pattern.PREFIXED, Operation.WRITE),
        Acl(WHO, Resource.CLUSTER, "kafka-cluster", Pattern.LITERAL, Operation.IDEMPOTENT_WRITE),
    }


def test_only_the_declared_principals_bindings_under_the_prefix_are_removed() -> None:
    declared = parse_access(RAW, "access/mesh.yaml")
    observed = [
        *declared.acls("p."),
        Acl(WHO, Resource.TOPIC, "p.dlq", Pattern.LITERAL, Operation.READ),  # extra: removed
        Acl(WHO, Resource.TOPIC, "q.dlq", Pattern.LITERAL, Operation.READ),  # other prefix
        Acl("User:else", Resource.TOPIC, "p.dlq", Pattern.LITERAL, Operation.READ),  # other user
        Acl(WHO, Resource.CLUSTER, "kafka-cluster", Pattern.LITERAL, Operation.DESCRIBE),
    ]
    plan = diff_acls(declared, observed, prefix="p.")
    assert [(c.kind, c.acl.name) for c in plan.changes if isinstance(c, AclChange)] == [
        (AclChangeKind.REMOVE, "p.dlq")
    ]
    assert str(plan.changes[0]) == "- remove ACL: User:mesh-workflows may READ topic 'p.dlq'"


def test_an_open_prefix_removes_nothing() -> None:
    declared = parse_access(RAW, "access/mesh.yaml")
    extra = Acl(WHO, Resource.TOPIC, "px.dlq", Pattern.LITERAL, Operation.READ)
    plan = diff_acls(declared, [*declared.acls("p"), extra], prefix="p")
    assert plan.changes == ()
    assert "no ACL is removed" in plan.notes[0]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "expected a 'components' mapping"),
        ({"components": {"x": {"principal": "nobody"}}}, "principal must be like 'User:mesh-x'"),
        ({"components": {"x": {"principal": "User:x", "grants": []}}}, "unknown keys ['grants']"),
        ({"components": {"x": {"principal": "User:x", "topics": {"own": []}}}}, "topics takes"),
    ],
)
def test_a_mistake_names_the_file_and_component(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=r"^access/a\.yaml") as caught:
        parse_access(raw, "access/a.yaml")
    assert message in str(caught.value)


def test_quotas_are_managed_only_for_components_that_declare_them() -> None:
    raw = {
        "components": {
            "a": {"principal": "User:a", "quotas": {"producer_byte_rate": 1024}},
            "b": {"principal": "User:b"},
        }
    }
    declared = parse_access(raw, "access/q.yaml")
    observed = {"a": {"request_percentage": 10.0}, "b": {"consumer_byte_rate": 5.0}}
    changes = diff_quotas(declared, observed)
    assert [(c.user, c.key, c.old, c.new, c.kind) for c in changes] == [
        ("a", "producer_byte_rate", None, 1024.0, "set_quota"),
        ("a", "request_percentage", 10.0, None, "remove_quota"),
    ]
    assert str(changes[0]) == "~ quota of User:a: producer_byte_rate (unset) → 1024"
    with pytest.raises(ValueError, match="quota producer_byte_rate must be a positive number"):
        parse_access(
            {"components": {"a": {"principal": "User:a", "quotas": {"producer_byte_rate": -1}}}},
            "access/q.yaml",
        )


def test_export_declares_what_it_can_and_lists_the_rest() -> None:
    declared = parse_access(RAW, "access/mesh.yaml")
    odd = Acl(WHO, Resource.TOPIC, "p.requests", Pattern.LITERAL, Operation.ALTER_CONFIGS)
    components, left_out = export_components([*declared.acls("p."), odd], "p.")
    assert left_out == [odd]
    assert parse_access({"components": components}, "exported").acls("p.") == declared.acls("p.")


def test_the_shipped_grants_name_declared_topics_and_never_overlap() -> None:
    """``access/components.yaml`` loads, grants only topics ``topics/`` declares, and no
    component's group or transactional id prefix covers another component's (a PREFIXED
    ``agent-`` for the agents' groups would also grant ``agent-manager…``: theirs is
    ``agent.``)."""
    shipped = load_access(ROOT / "access").components
    topics = {t.name for t in load_topics(ROOT / "topics", prefix="mesh.").topics}
    for component in shipped:
        named = {*component.read, *component.write, *component.describe}
        assert named <= topics, (component.component, sorted(named - topics))
    assert len({c.principal for c in shipped}) == len(shipped)
    for one, other in permutations(shipped, 2):
        for mine in (*one.groups, *one.transactional_ids):
            for theirs in (*other.groups, *other.transactional_ids):
                assert not theirs.startswith(mine), (one.component, mine, other.component)
