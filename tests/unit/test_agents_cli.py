"""``mesh agent``: flag parsing, and mistakes reported as one line before touching Kafka."""

from __future__ import annotations

import pytest

from mesh.cli.agent import parse_capability, parse_env
from mesh.errors import ConfigError
from mesh.events import Capability
from tests.helpers import assert_one_line_error, run_mesh

# Nothing listens here: a command that got as far as Kafka would fail differently.
NO_BROKER = {"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:9", "MESH_REQUEST_TIMEOUT_MS": "1000"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shell", Capability(name="shell")),
        ("python=7", Capability(name="python", level=7)),
        ("python=7#gpu#eu-west", Capability(name="python", level=7, tags=("gpu", "eu-west"))),
        ("model:large#gpu", Capability(name="model:large", tags=("gpu",))),
    ],
)
def test_capability_flags(text: str, expected: Capability) -> None:
    assert parse_capability(text) == expected


@pytest.mark.parametrize("text", ["", "a b", "python=high", "python=11", "x#bad tag"])
def test_bad_capability_flags(text: str) -> None:
    with pytest.raises(ConfigError, match="--capability"):
        parse_capability(text)


def test_env_flags() -> None:
    assert parse_env("A=1") == ("A", "1")
    assert parse_env("A=") == ("A", "")
    assert parse_env("A=b=c") == ("A", "b=c")
    for bad in ("A", "=1", "A B=1"):
        with pytest.raises(ConfigError, match="--env"):
            parse_env(bad)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--kind", "python"], "needs --module"),
        (["--kind", "python", "--module", "no_such_module_4242"], "cannot import"),
        (["--kind", "command"], "at least one --capability"),
        (["--kind", "command", "--capability", "x", "--argv", "{promt}"], "unknown placeholder"),
        (["--kind", "command", "--capability", "x", "--module", "m"], "--module is for"),
        (["--kind", "command", "--capability", "x", "--env", "NOPE"], "--env"),
        (["--kind", "shell"], "--kind"),
        (["--kind", "python", "--module", "mesh.agents.demo", "--argv", "x"], "--argv is for"),
        (["--kind", "python", "--module", "mesh.agents.demo", "--capability", "x"], "drop"),
    ],
)
def test_mistakes_are_one_line_errors(args: list[str], fragment: str) -> None:
    run = run_mesh("agent", "run", "--id", "cli-test", *args, env=NO_BROKER, timeout=60)
    line = assert_one_line_error(run)
    assert fragment in line


def test_an_unreachable_broker_is_a_one_line_error() -> None:
    run = run_mesh(
        "agent",
        "run",
        "--kind",
        "command",
        "--id",
        "cli-test",
        "--capability",
        "x",
        env=NO_BROKER,
        timeout=120,
    )
    line = assert_one_line_error(run)
    assert "no Kafka broker answered" in line
