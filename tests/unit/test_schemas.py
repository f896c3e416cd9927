"""Generated schemas: JSON Schema per event, the AsyncAPI document, and `mesh schemas`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaError

from mesh.cli import main
from mesh.events import CHANNELS, MESH_HEADERS, REGISTRY, Event, EventRegistry, Mapper
from mesh.schemagen import (
    ASYNCAPI_FILE,
    README_FILE,
    asyncapi_document,
    check,
    export,
    message_id,
    render,
    schema_path,
)
from tests.unit.test_events_samples import ALL_EVENTS, EVENT_IDS, sample_event
from tests.unit.test_mapper_upcasting import GreetingV1, GreetingV2, v1_to_v2

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
RENDERED = render()
COMPLETED = "events/task.completed/v1.json"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    """Run the real `mesh` entry point; return exit code, stdout and the stderr lines."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    assert "Traceback" not in captured.err
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A copy of the repository's committed schemas/ to mutate."""
    target = tmp_path / "schemas"
    shutil.copytree(REPO_SCHEMAS, target)
    return target


def edit_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# --- generation -----------------------------------------------------------------------------


def test_rendering_is_stable_sorted_and_newline_terminated() -> None:
    """Regenerating gives identical bytes, which is what makes the staleness check work."""
    assert render() == RENDERED
    assert ASYNCAPI_FILE in RENDERED
    for rel, text in RENDERED.items():
        assert text.endswith("\n"), rel
        if rel.endswith(".json"):
            assert (
                json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
                == text
            )


def test_there_is_one_schema_file_per_registered_type_and_version() -> None:
    expected = {str(schema_path(c.event_type(), c.event_version())) for c in REGISTRY}
    assert {rel for rel in RENDERED if rel.endswith(".json")} == expected


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=EVENT_IDS)
def test_event_schemas_are_valid_2020_12_and_accept_what_the_mapper_writes(
    cls: type[Event],
) -> None:
    """A non-Python producer validating against the schema agrees with the Python models."""
    schema = json.loads(RENDERED[str(schema_path(cls.event_type(), cls.event_version()))])
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:mesh:event:{cls.event_type()}:v{cls.event_version()}"
    assert schema["title"] == cls.__name__
    assert schema["required"][:2] == ["type", "schema_version"]
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    for full in (False, True):
        payload = json.loads(Mapper().encode(sample_event(cls, full=full)).value)
        validator.validate(payload)
        without_type = {k: v for k, v in payload.items() if k != "type"}
        with pytest.raises(SchemaError):
            validator.validate(without_type)
        with pytest.raises(SchemaError):
            validator.validate({**payload, "unexpected": 1})


def test_schemas_reject_what_the_models_reject() -> None:
    schema = json.loads(RENDERED[COMPLETED])
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    payload = json.loads(Mapper().encode(sample_event(REGISTRY.latest("task.completed"))).value)
    for change in ({"attempt": 0}, {"schema_version": 2}, {"event_id": "not-a-uuid"}):
        with pytest.raises(SchemaError):
            validator.validate({**payload, **change})


# --- AsyncAPI -------------------------------------------------------------------------------


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_asyncapi_document_is_a_consistent_asyncapi_3_document() -> None:
    """Every reference resolves; operations only use their channel's messages."""
    document = yaml.safe_load(RENDERED[ASYNCAPI_FILE])
    assert document == asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= set(document["info"])
    assert document["servers"]["local"]["protocol"] == "kafka"
    assert list(document["channels"]) == list(CHANNELS)
    for name, channel in document["channels"].items():
        assert channel["address"] == f"mesh.{name}"
        assert channel["bindings"]["kafka"]["topic"] == f"mesh.{name}"
        for ref in channel["messages"].values():
            _resolve(document, ref["$ref"])
    for operation_id, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), operation_id
        channel_ref = operation["channel"]["$ref"]
        _resolve(document, channel_ref)
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), operation_id
            _resolve(document, message["$ref"])
    messages = document["components"]["messages"]
    assert set(messages) == {message_id(cls) for cls in REGISTRY}
    for message in messages.values():
        _resolve(document, message["headers"]["$ref"])
        assert message["payload"]["$ref"].removeprefix("./") in RENDERED
        assert message["correlationId"]["location"] == "$message.header#/mesh-correlation-id"
        assert message["bindings"]["kafka"]["key"]["description"]


def test_every_channel_is_written_and_read_by_some_operation() -> None:
    document = asyncapi_document()
    used = {
        (op["action"], op["channel"]["$ref"].split("/")[-1])
        for op in document["operations"].values()
    }
    for name in CHANNELS:
        assert ("send", name) in used, name


def test_the_readme_example_is_a_valid_event_with_matching_headers() -> None:
    """The kcat example a non-Python producer copies decodes and validates."""
    readme_text = RENDERED[README_FILE]
    value = next(line for line in readme_text.splitlines() if line.startswith('{"event_id"'))
    headers = [(name, raw.encode()) for name, raw in re.findall(r"-H ([\w-]+)=(\S+)", readme_text)]
    assert [name for name, _ in headers] == list(MESH_HEADERS)
    event = Mapper().decode(value.encode(), headers)
    assert event.type == "request.submitted"
    schema = json.loads(RENDERED["events/request.submitted/v1.json"])
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(json.loads(value))
    for channel in CHANNELS.values():
        assert f"`{channel.address()}`" in readme_text


# --- mesh schemas export / check ------------------------------------------------------------


def test_the_committed_schemas_are_up_to_date() -> None:
    """schemas/ in the repository matches the models (run 'mesh schemas export' if not)."""
    assert check(REPO_SCHEMAS) == []


def test_export_then_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out"
    code, out, err = run(capsys, "schemas", "export", "--dir", str(target))
    assert (code, err) == (0, [])
    assert f"{len(RENDERED)} written" in out
    assert (target / COMPLETED).read_text(encoding="utf-8") == RENDERED[COMPLETED]
    code, out, err = run(capsys, "schemas", "check", "--dir", str(target))
    assert (code, err) == (0, [])
    assert "up to date" in out
    code, out, _ = run(capsys, "schemas", "export", "--dir", str(target))
    assert "0 written" in out


def test_check_uses_MESH_SCHEMAS_DIR(
    committed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MESH_SCHEMAS_DIR", str(committed))
    (committed / COMPLETED).unlink()
    code, _, err = run(capsys, "schemas", "check")
    assert code == 1
    assert err == [
        f"mesh: error: {(committed / COMPLETED).as_posix()}: missing; run 'mesh schemas export'"
    ]


def test_a_new_required_field_without_a_version_bump_fails_check(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The committed v1 lacks `agent_id` that the model requires: exactly what adding a required
    field to TaskCompleted without bumping schema_version would look like."""

    def drop_agent(schema: dict[str, Any]) -> None:
        del schema["properties"]["agent_id"]
        schema["required"].remove("agent_id")

    edit_json(committed / COMPLETED, drop_agent)
    code, _, err = run(capsys, "schemas", "check", "--dir", str(committed))
    assert code == 1
    assert len(err) == 1
    assert "task.completed/v1.json: breaking change at new required property 'agent_id'" in err[0]
    assert "bump TaskCompleted.schema_version to 2 and register an upcaster from v1" in err[0]


def test_a_removed_field_fails_check(committed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The committed v1 has a property the model no longer has."""
    edit_json(committed / COMPLETED, lambda s: s["properties"].update(legacy={"type": "string"}))
    code, _, err = run(capsys, "schemas", "check", "--dir", str(committed))
    assert code == 1
    assert len(err) == 1
    assert "breaking change at property 'legacy' was removed" in err[0]


def test_an_optional_field_made_required_and_a_changed_type_fail_check(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def loosen(schema: dict[str, Any]) -> None:
        schema["required"].remove("agent_id")
        schema["properties"]["attempt"]["type"] = "string"
        del schema["properties"]["attempt"]["minimum"]

    edit_json(committed / COMPLETED, loosen)
    code, _, err = run(capsys, "schemas", "check", "--dir", str(committed))
    assert code == 1
    assert len(err) == 2
    assert "property 'agent_id' is now required (it was optional)" in err[0]
    assert "attempt: type changed from string to integer" in err[1]


def test_an_added_optional_field_is_compatible_but_needs_an_export(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The model has `cost` (optional) that the committed copy lacks: stale, not breaking."""
    edit_json(committed / COMPLETED, lambda s: s["properties"].pop("cost"))
    code, _, err = run(capsys, "schemas", "check", "--dir", str(committed))
    assert code == 1
    assert err == [
        f"mesh: error: {(committed / COMPLETED).as_posix()}: stale; run 'mesh schemas export'"
    ]
    code, out, err = run(capsys, "schemas", "export", "--dir", str(committed))
    assert (code, err) == (0, [])
    assert "1 written" in out
    assert run(capsys, "schemas", "check", "--dir", str(committed))[0] == 0


def test_export_refuses_a_breaking_change_unless_forced(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regenerating cannot launder a breaking change into the committed schemas."""
    edit_json(committed / COMPLETED, lambda s: s["properties"].update(legacy={"type": "string"}))
    before = (committed / COMPLETED).read_text(encoding="utf-8")
    code, _, err = run(capsys, "schemas", "export", "--dir", str(committed))
    assert code == 1
    assert "property 'legacy' was removed" in err[0]
    assert (committed / COMPLETED).read_text(encoding="utf-8") == before
    code, _, _ = run(capsys, "schemas", "export", "--dir", str(committed), "--force")
    assert code == 0
    assert check(committed) == []


def test_unknown_schema_files_fail_check_and_export_removes_them(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stray = committed / "events" / "task.bogus" / "v1.json"
    stray.parent.mkdir()
    stray.write_text("{}\n", encoding="utf-8")
    code, _, err = run(capsys, "schemas", "check", "--dir", str(committed))
    assert code == 1
    assert "task.bogus/v1.json: no event model or upcaster reads this type and version" in err[0]
    code, out, _ = run(capsys, "schemas", "export", "--dir", str(committed))
    assert code == 0
    assert "removed" in out
    assert not stray.parent.exists()


def test_a_retired_version_read_through_an_upcaster_keeps_its_schema(tmp_path: Path) -> None:
    """Dropping the v1 model but keeping its upcaster leaves v1.json published, not 'unknown'."""
    export(tmp_path, EventRegistry([GreetingV1]))
    retired = tmp_path / "events" / "test.greeting" / "v1.json"
    assert retired.is_file()
    registry = EventRegistry([GreetingV2])
    registry.add_upcaster("test.greeting", 1, v1_to_v2)
    report = export(tmp_path, registry)
    assert report.removed == []
    assert retired.is_file()
    assert check(tmp_path, registry) == []
    assert check(tmp_path, EventRegistry([GreetingV2])) != []  # without the upcaster it is unknown


def test_check_json_output(committed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (committed / ASYNCAPI_FILE).write_text("stale\n", encoding="utf-8")
    code, out, err = run(capsys, "schemas", "check", "--dir", str(committed), "--json")
    assert (code, err) == (1, [])
    report = json.loads(out)
    assert report["ok"] is False
    assert report["problems"] == [
        {
            "kind": "stale",
            "path": (committed / ASYNCAPI_FILE).as_posix(),
            "message": "stale; run 'mesh schemas export'",
        }
    ]


def test_export_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schemas", "export", "--dir", str(tmp_path), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True
    assert sorted(report["written"]) == sorted(RENDERED)
    assert report["problems"] == []


def test_check_without_a_directory_is_one_readable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "schemas", "check", "--dir", str(tmp_path / "nowhere"))
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith("mesh: error: no schemas directory at ")
