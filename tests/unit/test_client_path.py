"""One client path: everything the client side publishes goes through the one producer of
``mesh.Client`` (``mesh/client/_connection.py``), and the command line opens no Kafka client of
its own — so every publish and call takes the same way, with the same errors."""

from __future__ import annotations

from tests.unit.test_layers import PACKAGE, _imports


def test_only_the_clients_connection_produces() -> None:
    producing = sorted(
        path.name
        for path in (PACKAGE / "client").glob("*.py")
        if "AIOKafkaProducer" in path.read_text()
    )
    assert producing == ["_connection.py"]


def test_the_command_line_opens_no_kafka_client_of_its_own() -> None:
    modules = sorted((PACKAGE / "cli").glob("*.py"))
    assert len(modules) > 10  # the walk found the commands: the check below is not vacuous
    direct = [
        path.name
        for path in modules
        if any(name == "aiokafka" or name.startswith("aiokafka.") for name in _imports(path))
    ]
    assert direct == []
