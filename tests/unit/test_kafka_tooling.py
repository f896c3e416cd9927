"""The real-Kafka tooling (``tooling/kafka``) without a JVM: cluster configuration, per-run
secrets, client settings, and ``kafka-broker status|stop`` of a recorded 3-node cluster.

What needs a running broker (start, kill -9, restart, logins) is in ``tests/kafka``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tooling.kafka._broker import _java_quote
from tooling.kafka._security import write_env_file
from tooling.kafka.kafka_broker import (
    ApacheKafka,
    BrokerStartError,
    BrokerState,
    NodeState,
    Secrets,
    client_env,
    describe,
    free_ports,
    main,
    pid_alive,
    read_state,
    write_state,
)


def prepared(tmp_path: Path, nodes: int) -> ApacheKafka:
    kafka = ApacheKafka(nodes=nodes, data_dir=tmp_path / "data", version="4.3.1")
    kafka.prepare()
    return kafka


def test_three_nodes_form_one_quorum_and_replicate_the_internal_topics(tmp_path: Path) -> None:
    """Three combined nodes vote in one controller quorum, each on its own ports and storage;
    internal topics get replication factor 3 and min ISR 2."""
    kafka = prepared(tmp_path, 3)
    properties = [kafka.server_properties(node) for node in kafka.nodes]
    voters = {props["controller.quorum.voters"] for props in properties}
    assert len(voters) == 1
    assert [voter.split("@")[0] for voter in voters.pop().split(",")] == ["1", "2", "3"]
    assert [props["node.id"] for props in properties] == ["1", "2", "3"]
    assert {props["process.roles"] for props in properties} == {"broker,controller"}
    ports = [port for node in kafka.nodes for port in node.ports.by_listener().values()]
    assert len(set(ports)) == 15  # five listeners on each of three nodes
    assert len({props["log.dirs"] for props in properties}) == 3
    for props in properties:
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["min.insync.replicas"] == "2"
    assert len(kafka.bootstrap_servers.split(",")) == 3
    assert kafka.node(2).directory == tmp_path / "data" / "node-2"


def test_one_node_keeps_the_single_node_settings(tmp_path: Path) -> None:
    kafka = prepared(tmp_path, 1)
    [node] = kafka.nodes
    props = kafka.server_properties(node)
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert node.directory == tmp_path / "data"  # a data dir kept from a single-node run fits


def test_each_sasl_listener_offers_its_mechanisms_and_tls_uses_the_keystore(
    tmp_path: Path,
) -> None:
    """SASL_PLAINTEXT offers PLAIN and SCRAM, SASL_SSL only SCRAM (a PLAIN client there meets
    'mechanism not offered'); PLAIN's user table is the per-run users; TLS listeners present
    the per-run keystore."""
    kafka = prepared(tmp_path, 1)
    props = kafka.server_properties(kafka.nodes[0])
    assert props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == (
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    )
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    [(user, password)] = kafka.sasl_users.items()
    assert (
        f'user_{user}="{password}"' in props["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    )
    assert "ScramLoginModule" in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert props["ssl.keystore.location"] == str(kafka.tls.keystore)
    assert props["advertised.listeners"].count("://") == 4  # not the controller's


def test_the_properties_file_holding_passwords_is_the_owners_only(tmp_path: Path) -> None:
    kafka = prepared(tmp_path, 3)
    for node in kafka.nodes:
        assert node.properties_file.stat().st_mode & 0o777 == 0o600
    secrets = tmp_path / "data" / "security" / "secrets.json"
    assert secrets.stat().st_mode & 0o777 == 0o600


def test_kept_storage_keeps_its_passwords(tmp_path: Path) -> None:
    """SCRAM users live in the formatted metadata: a second start on kept storage must log in
    with the same passwords, not new ones."""
    first = prepared(tmp_path, 1)
    (first.nodes[0].log_dir).mkdir(parents=True)
    (first.nodes[0].log_dir / "meta.properties").write_text("cluster.id=x\n")
    again = prepared(tmp_path, 1)
    assert again.sasl_users == first.sasl_users


def test_kept_storage_without_its_passwords_is_refused(tmp_path: Path) -> None:
    node_logs = tmp_path / "data" / "logs"
    node_logs.mkdir(parents=True)
    (node_logs / "meta.properties").write_text("cluster.id=x\n")
    with pytest.raises(BrokerStartError, match=r"holds Kafka storage but no secrets\.json"):
        prepared(tmp_path, 1)


def test_fixed_ports_need_a_single_node() -> None:
    with pytest.raises(BrokerStartError, match="fixed ports need a single node"):
        ApacheKafka(nodes=3, port=9092, version="4.3.1")


def test_secrets_are_random_per_run_and_never_shown() -> None:
    one, two = Secrets.generate(["mesh", "planner"]), Secrets.generate(["mesh", "planner"])
    assert set(one.users) == {"mesh", "planner"}
    assert len({*one.users.values(), one.keystore_password}) == 3
    assert one.users["mesh"] != two.users["mesh"]
    assert one.users["mesh"] not in repr(one)
    assert one.scram_arguments()[:2] == [
        "--add-scram",
        f"SCRAM-SHA-256=[name=mesh,password={one.users['mesh']}]",
    ]
    assert one.scram_arguments().count("--add-scram") == 4  # 2 users x 2 mechanisms


def test_a_user_name_that_would_break_the_jaas_line_is_refused() -> None:
    with pytest.raises(BrokerStartError, match="letters, digits"):
        Secrets.generate(['evil" user_x="pw'])


def test_secrets_round_trip_through_their_file(tmp_path: Path) -> None:
    made = Secrets.generate(["mesh"])
    made.save(tmp_path / "s" / "secrets.json")
    assert Secrets.load(tmp_path / "s" / "secrets.json") == made
    assert Secrets.load(tmp_path / "missing.json") is None


def test_client_env_names_what_each_protocol_needs(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    env = client_env(
        "h:1", "SASL_SSL", mechanism="SCRAM-SHA-512", user="u", password="p", ca_file=ca
    )
    assert env == {
        "MESH_BOOTSTRAP_SERVERS": "h:1",
        "MESH_SECURITY_PROTOCOL": "SASL_SSL",
        "MESH_SASL_MECHANISM": "SCRAM-SHA-512",
        "MESH_SASL_USERNAME": "u",
        "MESH_SASL_PASSWORD": "p",
        "MESH_SSL_CAFILE": str(ca),
    }
    assert client_env("h:1", "PLAINTEXT", user="u", password="p") == {
        "MESH_BOOTSTRAP_SERVERS": "h:1",
        "MESH_SECURITY_PROTOCOL": "PLAINTEXT",
    }
    with pytest.raises(ValueError, match="needs the CA file"):
        client_env("h:1", "SSL")


def test_env_files_are_sourced_by_a_shell_exactly(tmp_path: Path) -> None:
    """A value with quotes, spaces and $ reaches a shell that sources the file unchanged."""
    tricky = "a b'c\"$HOME`x`"
    path = tmp_path / "c" / "x.env"
    write_env_file(path, {"MESH_SASL_PASSWORD": tricky})
    done = subprocess.run(
        ["bash", "-c", f'set -a; . "{path}"; printf %s "$MESH_SASL_PASSWORD"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == tricky
    assert path.stat().st_mode & 0o777 == 0o600


def test_java_argfile_quoting_escapes_backslashes_and_quotes() -> None:
    assert _java_quote('a "b" \\c') == '"a \\"b\\" \\\\c"'


# --------------------------------------------------------------------------------------------
# kafka-broker status|stop on a recorded cluster (stand-in processes instead of JVMs)


@pytest.fixture
def recorded_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrokerState]:
    """Three processes recorded as the nodes of a background cluster: each is a sleeping
    Python whose command line names its node's properties file, as a Kafka node's does."""
    monkeypatch.setenv("MESH_CACHE_DIR", str(tmp_path / "cache"))
    processes = []
    nodes = []
    for node_id, ports in enumerate([free_ports(5) for _ in range(3)], start=1):
        properties = tmp_path / f"node-{node_id}" / "server.properties"
        properties.parent.mkdir()
        properties.write_text("")
        process = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)", str(properties)],
            start_new_session=True,
        )
        processes.append(process)
        listeners = ["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL", "CONTROLLER"]
        nodes.append(
            NodeState(
                node_id, process.pid, dict(zip(listeners, ports, strict=True)), str(properties), ""
            )
        )
    state = BrokerState(
        version="4.3.1",
        data_dir=str(tmp_path / "data"),
        owns_data_dir=False,
        started_at=0.0,
        format_seconds=1.0,
        start_seconds=2.0,
        nodes=tuple(nodes),
        users=("mesh",),
        ca_file=str(tmp_path / "ca.pem"),
        clients_dir=str(tmp_path / "clients"),
    )
    write_state(state)
    try:
        yield state
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def test_status_reports_each_node_of_a_cluster(
    recorded_cluster: BrokerState, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nodes that run but do not listen, and a node that died, are each named; the exit code
    says the cluster is not healthy."""
    os.kill(recorded_cluster.nodes[2].pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: reap the stand-in (a child of this process) so that
    # status runs after it has died, not while the kernel is still ending it.
    os.waitpid(recorded_cluster.nodes[2].pid, 0)
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("degraded: Apache Kafka 4.3.1, 0 of 3 nodes serving")
    assert f"node 1: pid {recorded_cluster.nodes[0].pid}, running but not accepting" in out
    assert f"node 3: pid {recorded_cluster.nodes[2].pid}, not running" in out


def test_stop_ends_every_node_and_forgets_the_cluster(
    recorded_cluster: BrokerState, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stop"]) == 0
    assert "stopped the 3-node Kafka cluster" in capsys.readouterr().out
    assert not any(pid_alive(node.pid) for node in recorded_cluster.nodes)
    assert read_state() is None
    assert main(["status"]) == 1


def test_the_recorded_state_round_trips_and_its_description_shows_no_secret(
    recorded_cluster: BrokerState,
) -> None:
    assert read_state() == recorded_cluster
    text = describe(recorded_cluster)
    assert "3 nodes, each broker+controller" in text
    assert "replication factor 3, min.insync.replicas 2" in text
    for listener in ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"):
        assert f"{listener}:" in text
    assert "password" not in json.dumps(json.loads(recorded_cluster.to_json()))


def test_start_with_fixed_ports_for_three_nodes_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MESH_CACHE_DIR", str(tmp_path))
    assert main(["start", "--nodes", "3", "--port", "9092"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "kafka-broker: error: fixed ports need a single node; a cluster picks free ports"
    ]
