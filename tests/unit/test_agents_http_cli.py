"""``mesh agent run --kind http``: its flags, and mistakes reported as one line before Kafka."""

from __future__ import annotations

import pytest

from mesh.cli.agent import parse_header
from mesh.errors import ConfigError
from tests.helpers import assert_one_line_error, run_mesh

NO_BROKER = {"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:9", "MESH_REQUEST_TIMEOUT_MS": "1000"}


def test_header_flags() -> None:
    assert parse_header("Authorization: Bearer abc") == ("Authorization", "Bearer abc")
    assert parse_header("X-Empty:") == ("X-Empty", "")
    assert parse_header("X-Url: http://a:b") == ("X-Url", "http://a:b")


@pytest.mark.parametrize("text", ["NoColon", ": s3cret", "Bad Name: s3cret"])
def test_bad_header_flags_do_not_echo_the_value(text: str) -> None:
    with pytest.raises(ConfigError, match="--header") as caught:
        parse_header(text)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--kind", "http", "--capability", "x"], "needs --url"),
        (["--kind", "http", "--url", "http://127.0.0.1:1/run"], "at least one --capability"),
        (["--kind", "http", "--capability", "x", "--url", "ftp://h/x"], "--url"),
        (["--kind", "http", "--capability", "x", "--url", "http://h/x", "--argv", "a"], "--argv"),
        (["--kind", "command", "--capability", "x", "--url", "http://h/x"], "--url is for"),
        (
            [
                "--kind",
                "http",
                "--capability",
                "x",
                "--url",
                "http://h/",
                "--breaker-fail-max",
                "0",
            ],
            "fail-max",
        ),
    ],
)
def test_mistakes_are_one_line_errors(args: list[str], fragment: str) -> None:
    run = run_mesh("agent", "run", "--id", "cli-http", *args, env=NO_BROKER, timeout=60)
    line = assert_one_line_error(run)
    assert fragment in line, line


def test_the_url_secret_is_not_echoed() -> None:
    url = "ftp://user:s3cret@example.test/run?token=t0ken"
    run = run_mesh(
        "agent",
        "run",
        "--id",
        "cli-http",
        "--kind",
        "http",
        "--capability",
        "x",
        "--url",
        url,
        env=NO_BROKER,
        timeout=60,
    )
    line = assert_one_line_error(run)
    assert "s3cret" not in line
    assert "t0ken" not in line
