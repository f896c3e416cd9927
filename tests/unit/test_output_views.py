"""How output is shown: ``mesh logs`` lines, the last line a live view shows, every attempt's
output under ``mesh status --task``."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from mesh.cli._follow import last_line
from mesh.cli._workflow_view import attempt_outputs, tasks_table
from mesh.cli.logs import Selection, lines_of
from mesh.events import Producer, TaskOutput, meta
from mesh.workflows import TaskState
from tests.unit.test_workflow_harness import Flow, plan, spec


def chunk(text: str, *, truncated: bool = False, attempt: int = 1) -> TaskOutput:
    return TaskOutput(
        **meta(Producer(component="agent", instance="a1"), correlation_id="req-1"),
        workflow_id="wf-1",
        task_id="build",
        attempt=attempt,
        agent_id="a1",
        stream="stderr",
        chunk=0,
        text=text,
        truncated=truncated,
    )


def test_logs_prefix_each_line_and_say_where_output_was_cut() -> None:
    assert lines_of(chunk("one\ntwo\n")) == ["build#1 stderr | one\n", "build#1 stderr | two\n"]
    cut = lines_of(chunk("last", truncated=True))
    assert cut[0] == "build#1 stderr | last\n"
    assert "output truncated" in cut[1]


def test_a_selection_picks_a_task_and_an_attempt() -> None:
    assert Selection().wants(chunk("x"))
    assert Selection("build").wants(chunk("x", attempt=2))
    assert not Selection("build", 1).wants(chunk("x", attempt=2))
    assert not Selection("test").wants(chunk("x"))


def test_the_last_line_is_the_last_one_with_text_and_is_cut_for_a_cell() -> None:
    assert last_line("first\nsecond\n\n  \n") == "second"
    assert last_line("\n") == ""
    assert last_line("x" * 300, limit=10) == "x" * 9 + "…"


def test_the_tasks_table_shows_the_last_output_line_only_when_there_is_one() -> None:
    flow = Flow(plan(spec("a"), spec("b")))
    flow.start("a")

    def render(**kwargs: object) -> str:
        console = Console(width=200, record=True)
        console.print(tasks_table(flow.s, **kwargs))  # type: ignore[arg-type]
        return console.export_text()

    assert "last output" not in render()
    shown = render(last_lines={"a": "compiling [x] 3/4"})
    assert "last output" in shown
    assert "compiling [x] 3/4" in shown  # markup in a program's output is shown as printed


def test_attempt_outputs_list_failed_attempts_then_the_success() -> None:
    task = TaskState(
        task_id="t",
        status="succeeded",
        attempt=3,
        output={"stdout": "ok"},
        failed_outputs={"2": {"stderr": "second"}, "1": {"stderr": "first"}},
        ended_at=datetime.now(UTC),
    )
    assert attempt_outputs(task) == [
        {"attempt": 1, "outcome": "failed", "stderr": "first"},
        {"attempt": 2, "outcome": "failed", "stderr": "second"},
        {"attempt": 3, "outcome": "succeeded", "stdout": "ok"},
    ]
