"""``mesh submit`` mistakes are caught before anything is published: one readable line each.

The broker address points nowhere, so a mistake that slipped past validation would show up as a
connection error instead of the expected message.
"""

from __future__ import annotations

import pytest

from tests.helpers import assert_one_line_error, run_mesh

NOBODY = {"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MESH_REQUEST_TIMEOUT_MS": "2000"}


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        ((), None, "give a FILE"),
        (("-", "--type", "bugfix"), "type: bugfix\n", "either FILE or request flags"),
        (("--type", "bugfix"), None, "'description' is missing"),
        (("--description", "x"), None, "'type' is missing"),
        (("--type", "bugfix", "--description", "x", "-c", "oops"), None, "expected NAME=VALUE"),
        (("--type", "bugfix", "--description", "x", "--priority", "urgent"), None, "priority"),
        (("--type", "bugfix", "--description", "x", "--deadline", "someday"), None, "deadline"),
        (("-",), "type: bugfix\ndescripton: typo\n", "did you mean 'description'"),
        (("-",), "tasks: [\n", "not valid YAML/JSON"),
    ],
)
def test_a_bad_request_is_one_line_and_publishes_nothing(
    args: tuple[str, ...], stdin: str | None, expected: str
) -> None:
    line = assert_one_line_error(run_mesh("submit", *args, env=NOBODY, stdin=stdin))
    assert expected in line
    assert "no Kafka broker answered" not in line


def test_help_shows_the_flag_example() -> None:
    shown = run_mesh("submit", "--help")
    assert shown.code == 0
    assert "--description" in shown.stdout
    assert "mesh submit --type bugfix" in " ".join(shown.stdout.split())
