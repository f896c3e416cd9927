"""SASL (SCRAM-SHA-256/512) and TLS on real Apache Kafka: logins that work, the diamond on secured
listeners, and every misconfiguration as one line naming its cause.

The session broker has every listener (``tooling/kafka``): SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512), SASL_SSL (SCRAM only), SSL, with users and a CA made for this run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.topics import apply_topics, load_topics, plan_topics
from tests._fixtures.kafka import secured_settings
from tests.contract.task_path import check_diamond
from tests.helpers import assert_one_line_error, run_mesh
from tooling.kafka.kafka_broker import ApacheKafka, BrokerState, describe

TOPICS = Path(__file__).resolve().parents[2] / "topics"


@pytest.mark.parametrize(
    ("listener", "mechanism"),
    [
        ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
        ("SSL", None),
    ],
)
async def test_each_secured_listener_applies_and_plans_the_topics(
    real_kafka: ApacheKafka, topic_prefix: str, listener: str, mechanism: str | None
) -> None:
    """A client with the per-run SCRAM user (or just the CA, on SSL) creates the mesh's topics;
    a plan afterwards finds nothing to change."""
    settings = secured_settings(real_kafka, listener, topic_prefix, mechanism or "SCRAM-SHA-512")
    declared = load_topics(TOPICS, prefix=topic_prefix).topics
    applied = await apply_topics(settings, declared)
    assert len(applied.changes) == len(declared)
    assert (await plan_topics(settings, declared)).changes == ()


# --------------------------------------------------------------------------------------------
# Misconfigurations: a real `mesh topics plan`, one line on stderr, the cause named.


MISCONFIGURATIONS: dict[str, tuple[str, dict[str, str | None], list[str]]] = {
    # name: (listener whose settings a user started from, changes (None: unset), words of the line)
    "sasl without a password": (
        "SASL_SSL",
        {"MESH_SASL_PASSWORD": None},
        ["MESH_SASL_PASSWORD is not set", "SASL_SSL"],
    ),
    "wrong password": (
        "SASL_SSL",
        {"MESH_SASL_PASSWORD": "not-the-password"},
        ["login refused", "'mesh'", "invalid credentials"],
    ),
    "wrong mechanism": (
        "SASL_SSL",
        {"MESH_SASL_MECHANISM": "PLAIN"},
        ["does not offer SASL mechanism PLAIN", "SCRAM-SHA-512"],
    ),
    "plaintext client on the SASL port": (
        "SASL_PLAINTEXT",
        {"MESH_SECURITY_PROTOCOL": "PLAINTEXT"},
        ["is the SASL_PLAINTEXT listener", "MESH_SECURITY_PROTOCOL is PLAINTEXT"],
    ),
    "plaintext client on the TLS port": (
        "SSL",
        {"MESH_SECURITY_PROTOCOL": "PLAINTEXT"},
        ["is the SSL listener", "MESH_SECURITY_PROTOCOL=SSL"],
    ),
    "plaintext client on the SASL_SSL port": (
        "SASL_SSL",
        {"MESH_SECURITY_PROTOCOL": "PLAINTEXT"},
        ["is the SASL_SSL listener", "MESH_SECURITY_PROTOCOL=SASL_SSL"],
    ),
    "TLS without the CA": (
        "SASL_SSL",
        {"MESH_SSL_CAFILE": None},
        ["certificate", "not trusted", "MESH_SSL_CAFILE"],
    ),
    "a CA file that is not one": (
        "SSL",
        {"MESH_SSL_CAFILE": __file__},
        ["MESH_SSL_CAFILE", "not a usable CA bundle"],
    ),
}


@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
def test_each_misconfiguration_is_one_line_naming_its_cause(
    real_kafka: ApacheKafka, topic_prefix: str, case: str
) -> None:
    """A real `mesh topics plan`: non-zero exit, exactly one line on stderr, the cause in it,
    and never the password."""
    listener, changes, words = MISCONFIGURATIONS[case]
    env = real_kafka.client_env(listener)
    password = env.get("MESH_SASL_PASSWORD")
    for key, value in changes.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    done = run_mesh(
        "topics",
        "plan",
        "--dir",
        str(TOPICS),
        env={**env, "MESH_TOPIC_PREFIX": topic_prefix},
        timeout=60,
    )
    line = assert_one_line_error(done)
    for word in words:
        assert word in line, line
    if password:
        assert password not in done.stdout + done.stderr


@pytest.mark.parametrize("case", ["wrong password", "plaintext client on the SASL port"])
def test_a_component_says_the_same_one_line(
    real_kafka: ApacheKafka, topic_prefix: str, case: str
) -> None:
    """`mesh run planner` (a long-running component, not a one-shot command) stops on a
    misconfiguration with the same one line as `mesh topics plan`."""
    listener, changes, words = MISCONFIGURATIONS[case]
    env = {**real_kafka.client_env(listener), **changes, "MESH_TOPIC_PREFIX": topic_prefix}
    done = run_mesh("run", "planner", env={k: v for k, v in env.items() if v is not None})
    line = assert_one_line_error(done)
    for word in words:
        assert word in line, line


# --------------------------------------------------------------------------------------------
# The diamond on secured listeners


async def test_diamond_over_scram_sha_512(real_kafka: ApacheKafka, topic_prefix: str) -> None:
    """Every component and agent logs in with SCRAM-SHA-512 (SASL_PLAINTEXT) and the diamond
    completes, replay equal to live."""
    await check_diamond(
        secured_settings(real_kafka, "SASL_PLAINTEXT", topic_prefix), exact_offsets=True
    )


async def test_diamond_over_sasl_ssl(real_kafka: ApacheKafka, topic_prefix: str) -> None:
    """Every component and agent talks TLS (trusting the per-run CA) and logs in with
    SCRAM-SHA-512: the diamond completes, replay equal to live."""
    await check_diamond(secured_settings(real_kafka, "SASL_SSL", topic_prefix), exact_offsets=True)


# --------------------------------------------------------------------------------------------
# Passwords stay secret


def test_no_password_in_the_tooling_output_logs_or_command_lines(
    real_kafka: ApacheKafka,
) -> None:
    """What `kafka-broker start` prints, the brokers' logs and their command lines (what `ps`
    shows) hold none of the per-run passwords; the env files that do are the owner's only."""
    secrets = [*real_kafka.sasl_users.values()]
    shown = describe(BrokerState.of(real_kafka))
    logs = "".join(node.log_file.read_text(errors="replace") for node in real_kafka.nodes)
    command_lines = "".join(
        Path(f"/proc/{node.pid}/cmdline").read_bytes().decode(errors="replace")
        for node in real_kafka.nodes
    )
    for secret in secrets:
        assert secret not in shown
        assert secret not in logs
        assert secret not in command_lines
    env_files = sorted(real_kafka.clients_dir.glob("*.env"))
    assert len(env_files) == 4
    assert {path.stat().st_mode & 0o777 for path in env_files} == {0o600}
    assert secrets[0] in (real_kafka.clients_dir / "sasl-ssl.env").read_text()
    assert real_kafka.node(1).properties_file.stat().st_mode & 0o777 == 0o600
