"""Inputs that flow to every kind of agent: upstream outputs and the request's context as
placeholders (argv and prompt), the inputs file of command agents, ``ctx`` of Python agents, the
body of HTTP agents; and an HTTP call in flight that a cancel stops."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from mesh.agentmanager.runtime import load_templates, parse_capability
from mesh.agents import (
    CommandConfig,
    CommandRunner,
    Failure,
    HttpConfig,
    HttpRunner,
    PythonRunner,
    Success,
    TaskContext,
    agent,
    agents_in,
)
from mesh.agents._templates import (
    UPSTREAM_PROMPT_BUDGET,
    output_text,
    prompt_with_upstream,
    render,
    render_prompt,
    values_for,
)
from mesh.errors import ArgvTemplateError
from mesh.events import (
    Capability,
    Producer,
    TaskAssigned,
    TaskRequest,
    meta,
)
from mesh.planner import Planner, PlannerConfig
from tests._agents_support import eventually, spec, task_assigned
from tests._http_support import http_stub, json_answer

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]

UPSTREAM: dict[str, Any] = {
    # A command agent's output: stdout, and ``json`` when stdout is a JSON object.
    "build": {"exit_code": 0, "stdout": "built 3 files\n", "stderr": "", "truncated": False},
    "scan": {"exit_code": 0, "stdout": '[{"file": "a.py"}, {"file": "b.py"}]\n', "stderr": ""},
    "meta": {"stdout": '{"version": "1.2"}', "json": {"version": "1.2"}},
    "prose": {"stdout": "not json"},
    # A Python or HTTP agent's output: already JSON, no stdout.
    "summarise": {"text": "short", "score": {"value": 9}},
}
INPUTS: dict[str, Any] = {
    "lang": "python",
    "build": "own input wins",
    "upstream": UPSTREAM,
    "context": {"repository": "/srv/repo", "files": ["x.py", "y.py"]},
}


def values(prompt: str | None = None, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return values_for(
        prompt=prompt,
        task_id="t",
        workflow_id="wf",
        attempt=1,
        inputs=INPUTS if inputs is None else inputs,
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{inputs.scan.stdout}", '[{"file": "a.py"}, {"file": "b.py"}]\n'),
        ("{inputs.scan.json.1.file}", "b.py"),
        ("{inputs.scan.json}", '[{"file": "a.py"}, {"file": "b.py"}]'),
        ("{inputs.meta.json.version}", "1.2"),
        ("{inputs.summarise.json.score.value}", "9"),
        ("{inputs.summarise.text}", "short"),
        ("{inputs.upstream.build.stdout}", "built 3 files\n"),
        ("{inputs.upstream.scan.json.0.file}", "a.py"),
        ("{inputs.build}", "own input wins"),
        ("{context.repository}", "/srv/repo"),
        ("{context.files.1}", "y.py"),
        ("cd {context.repository} && {inputs.lang}", "cd /srv/repo && python"),
    ],
)
def test_upstream_shorthand_json_paths_and_context(template: str, expected: str) -> None:
    """``inputs.<task>`` is the upstream task's output unless the task has an input of that
    name; ``json`` parses an upstream's stdout (or takes a JSON output as it is)."""
    assert render(template, values()) == expected


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{inputs.ghost.stdout}", "no input 'ghost' and no upstream task 'ghost'"),
        ("{inputs.ghost.stdout}", "upstream tasks: build, meta, prose, scan, summarise"),
        ("{inputs.build.stdout}", "inputs.build is a string"),
        ("{inputs.upstream.scan.stdot}", "output of upstream task 'scan' has no key 'stdot'"),
        ("{inputs.prose.json.x}", "the stdout of upstream task 'prose' is not JSON"),
        ("{inputs.scan.json.5}", "has 2 items, no item 5"),
        ("{inputs.meta.json.name}", "inputs.upstream.meta.json has no key 'name'"),
        ("{context.branch}", "the request's context has no key 'branch'"),
    ],
)
def test_a_missing_input_is_an_error_naming_the_placeholder(template: str, fragment: str) -> None:
    with pytest.raises(ArgvTemplateError) as caught:
        render(template, values())
    assert str(caught.value).startswith(template + ":")
    assert fragment in str(caught.value)
    assert caught.value.kind == "bad_template"
    assert caught.value.retriable is False


def test_without_a_context_every_context_placeholder_is_missing() -> None:
    with pytest.raises(ArgvTemplateError, match="context has no key 'repository'"):
        render("{context.repository}", values(inputs={}))


def test_a_prompt_is_rendered_and_its_other_braces_are_prose() -> None:
    prompt = (
        "Fix what {inputs.scan.json.0.file} says in {context.repository}; keep {prompt}, "
        "{task_id}, {x.y}, f'{value}' and {'a': 1} as written; {{inputs.lang}} is literal."
    )
    assert render_prompt(prompt, values()) == (
        "Fix what a.py says in /srv/repo; keep {prompt}, {task_id}, {x.y}, "
        "f'{value}' and {'a': 1} as written; {inputs.lang} is literal."
    )
    assert render_prompt(None, values()) is None


def test_a_prompt_naming_a_missing_input_is_an_error() -> None:
    with pytest.raises(ArgvTemplateError, match=r"^\{inputs\.plan\.stdout\}: "):
        render_prompt("Implement {inputs.plan.stdout}", values())


def argv_prompt(prompt: str, inputs: dict[str, Any]) -> str:
    """What ``{prompt}`` stands for in a command agent's argv."""
    rendered: str = values_for(
        prompt=prompt,
        task_id="t",
        workflow_id="w",
        attempt=1,
        inputs=inputs,
        upstream_in_prompt=True,
    )["prompt"]
    return rendered


def test_prompt_placeholder_in_argv_carries_the_upstream_outputs() -> None:
    """For an LLM CLI given ``{prompt}``: the task's prompt, then each upstream's output under
    a heading (stdout or text, else JSON)."""
    inputs = {"upstream": {"design": {"stdout": "use a dict\n"}, "ask": {"answer": 42}}}
    rendered = argv_prompt("Implement it.", inputs)
    assert rendered == (
        'Implement it.\n\n## Output of design\n\nuse a dict\n\n## Output of ask\n\n{"answer": 42}'
    )


def test_a_prompt_that_places_inputs_itself_gets_nothing_appended() -> None:
    inputs = {"upstream": {"design": {"stdout": "use a dict"}}}
    rendered = argv_prompt("Implement {inputs.design.stdout}.", inputs)
    assert rendered == "Implement use a dict."


def test_no_upstream_leaves_the_prompt_as_it_is() -> None:
    assert prompt_with_upstream("p", {}) == "p"
    assert prompt_with_upstream(None, None) is None
    assert prompt_with_upstream(None, {"a": {"text": "t"}}) == "## Output of a\n\nt"


def test_upstream_text_in_a_prompt_is_cut_to_fit_one_argument() -> None:
    big = "x" * (UPSTREAM_PROMPT_BUDGET * 2)
    rendered = prompt_with_upstream("p", {"a": {"stdout": big}, "b": {"stdout": "small"}})
    assert rendered is not None
    assert len(rendered) < UPSTREAM_PROMPT_BUDGET + 1_000
    assert "the whole output is in the file $MESH_INPUTS_FILE" in rendered
    assert rendered.endswith("## Output of b\n\nsmall")
    wide = prompt_with_upstream(None, {"a": {"stdout": "é" * UPSTREAM_PROMPT_BUDGET}})
    assert wide is not None
    assert len(wide.encode()) < UPSTREAM_PROMPT_BUDGET + 1_000  # bytes: what exec counts


def test_output_text() -> None:
    assert output_text({"stdout": "a\n\n", "text": "t"}) == "t"
    assert output_text({"stdout": "a\n"}) == "a"
    assert output_text({"n": 1}) == '{"n": 1}'
    assert output_text(None) == ""


def assigned(
    *,
    command: list[str] | None = None,
    prompt: str | None = None,
    inputs: dict[str, Any] | None = None,
    capability: str = "work",
) -> TaskAssigned:
    inputs = INPUTS if inputs is None else inputs
    task = spec("T", capability, command=command, prompt=prompt, inputs=inputs)
    return task_assigned("agent-1", task)


def _text_of(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def exists(path: str) -> bool:
    return os.path.exists(path)


async def no_progress(percent: float | None, message: str, details: dict[str, Any]) -> None:
    return None


def command_runner(tmp_path: Path, argv: tuple[str, ...] = ()) -> CommandRunner:
    config = CommandConfig(
        capabilities=(Capability(name="work"),),
        argv=argv,
        allow_task_command=True,
        workdir=tmp_path,
    )
    return CommandRunner(config, agent_id="agent-1")


INSPECT_INPUTS_FILE = """
import json, os, stat, sys
path = os.environ["MESH_INPUTS_FILE"]
mode = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
print(json.dumps({"path": path, "dir_mode": mode, "inputs": json.load(open(path))}))
"""


async def test_a_command_agent_gets_the_whole_inputs_in_a_private_file_removed_after(
    tmp_path: Path,
) -> None:
    outcome = await command_runner(tmp_path).run(
        assigned(command=[PY, "-c", INSPECT_INPUTS_FILE]), no_progress
    )
    assert isinstance(outcome, Success), outcome
    seen = outcome.output["json"]
    assert seen["inputs"] == INPUTS
    assert seen["dir_mode"] == stat.S_IRWXU  # 0700: the attempt's own directory
    assert not exists(seen["path"])
    assert not exists(os.path.dirname(seen["path"]))


async def test_a_cancelled_command_leaves_no_inputs_file(tmp_path: Path) -> None:
    marker = tmp_path / "path"
    code = "import os, sys, time; open(sys.argv[1], 'w').write(os.environ['MESH_INPUTS_FILE']); "
    code += "time.sleep(600)"
    runner = command_runner(tmp_path)
    run = asyncio.create_task(
        runner.run(assigned(command=[PY, "-c", code, str(marker)]), no_progress)
    )
    path: str = await eventually(lambda: _text_of(marker), what="the command to start")
    assert exists(path)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not exists(path)


async def test_the_llm_coder_template_passes_the_prompt_with_upstream_work(tmp_path: Path) -> None:
    """``mesh agents spawn llm-coder --set 'argv=[cli, -p, "{prompt}"]'``: the CLI gets the
    task's prompt and the upstream outputs in its one prompt argument."""
    print_argv = "import json, sys; print(json.dumps(sys.argv[1:]))"
    templates = load_templates([ROOT / "agents" / "templates.yaml"])
    coder = templates.resolve("llm-coder", {"argv": [PY, "-c", print_argv, "-p", "{prompt}"]})
    config = CommandConfig(
        capabilities=tuple(parse_capability(c) for c in coder.capabilities),
        argv=coder.argv,
        workdir=tmp_path,
    )
    runner = CommandRunner(config, agent_id="llm-coder-1")
    inputs = {"upstream": {"design": {"stdout": "add a flag\n"}}}
    outcome = await runner.run(assigned(prompt="Implement the design.", inputs=inputs), no_progress)
    assert isinstance(outcome, Success), outcome
    assert json.loads(outcome.output["stdout"]) == [
        "-p",
        "Implement the design.\n\n## Output of design\n\nadd a flag",
    ]


async def test_a_large_upstream_output_still_fits_the_prompt_argument(tmp_path: Path) -> None:
    """Over 128 KiB in one argument, exec fails (E2BIG); the prompt is cut to fit, and the
    whole output is in the inputs file."""
    code = "import json, os, sys; print(len(sys.argv[1]), "
    code += "len(json.load(open(os.environ['MESH_INPUTS_FILE']))['upstream']['a']['stdout']))"
    runner = command_runner(tmp_path, argv=(PY, "-c", code, "{prompt}"))
    inputs = {"upstream": {"a": {"stdout": "ü" * 200_000}}}
    outcome = await runner.run(assigned(prompt="Go.", inputs=inputs), no_progress)
    assert isinstance(outcome, Success), outcome
    in_argv, in_file = map(int, outcome.output["stdout"].split())
    assert in_argv < UPSTREAM_PROMPT_BUDGET
    assert in_file == 200_000


async def test_an_argv_that_places_inputs_itself_gets_the_bare_prompt(tmp_path: Path) -> None:
    print_argv = "import json, sys; print(json.dumps(sys.argv[1:]))"
    command = [PY, "-c", print_argv, "{prompt}", "{inputs.design.stdout}"]
    inputs = {"upstream": {"design": {"stdout": "add a flag"}}}
    outcome = await command_runner(tmp_path).run(
        assigned(command=command, prompt="Implement it.", inputs=inputs), no_progress
    )
    assert isinstance(outcome, Success), outcome
    assert json.loads(outcome.output["stdout"]) == ["Implement it.", "add a flag"]


async def test_a_command_naming_a_missing_input_fails_without_running(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    outcome = await command_runner(tmp_path).run(
        assigned(command=[PY, "-c", "open('ran', 'w')", "{inputs.lint.stdout}"]), no_progress
    )
    assert isinstance(outcome, Failure)
    assert outcome.kind == "bad_template"
    assert outcome.retriable is False
    assert outcome.message.startswith("{inputs.lint.stdout}: ")
    assert not ran.exists()


@agent(capabilities=["work"])
async def reads_inputs(ctx: TaskContext) -> dict[str, Any]:
    return {
        "prompt": ctx.prompt,
        "build": dict(ctx.upstream("build")),
        "repository": ctx.context["repository"],
        "lang": ctx.inputs["lang"],
    }


@agent(capabilities=["ghost"])
async def asks_for_a_ghost(ctx: TaskContext) -> dict[str, Any]:
    return dict(ctx.upstream("ghost"))


async def test_a_python_agent_gets_inputs_context_upstream_and_its_prompt_rendered() -> None:
    runner = PythonRunner(agents_in(sys.modules[__name__]))
    outcome = await runner.run(assigned(prompt="Go to {context.repository}."), no_progress)
    assert outcome == Success(
        {
            "prompt": "Go to /srv/repo.",
            "build": UPSTREAM["build"],
            "repository": "/srv/repo",
            "lang": "python",
        }
    )


async def test_a_python_agent_asking_for_a_missing_upstream_fails_clearly() -> None:
    runner = PythonRunner(agents_in(sys.modules[__name__]))
    outcome = await runner.run(assigned(capability="ghost"), no_progress)
    assert isinstance(outcome, Failure)
    assert outcome.kind == "missing_input"
    assert outcome.retriable is False
    assert "no upstream task 'ghost'" in outcome.message


async def test_a_python_agents_prompt_naming_a_missing_input_fails_before_it_runs() -> None:
    runner = PythonRunner(agents_in(sys.modules[__name__]))
    outcome = await runner.run(assigned(prompt="{inputs.nope}"), no_progress)
    assert isinstance(outcome, Failure)
    assert (outcome.kind, outcome.retriable) == ("bad_template", False)
    assert outcome.message.startswith("{inputs.nope}: ")


async def test_an_http_agent_gets_the_inputs_and_the_rendered_prompt_in_its_body() -> None:
    with http_stub(json_answer(200, {})) as stub:
        runner = HttpRunner(
            HttpConfig(capabilities=(Capability(name="work"),), url=stub.url), agent_id="h"
        )
        try:
            outcome = await runner.run(assigned(prompt="{inputs.scan.json.0.file}"), no_progress)
            missing = await runner.run(assigned(prompt="{inputs.nope}"), no_progress)
        finally:
            await runner.aclose()
        [request] = stub.requests()  # the bad prompt was never posted
    assert outcome == Success({})
    assert request.body["prompt"] == "a.py"
    assert request.body["inputs"] == INPUTS
    assert isinstance(missing, Failure)
    assert missing.kind == "bad_template"


async def test_cancelling_an_http_call_in_flight_closes_its_connection() -> None:
    """The endpoint never answers; cancelling the attempt (what a CancelTask does) ends the
    call and the endpoint sees its connection closed."""
    received = asyncio.Event()
    closed = asyncio.Event()

    async def endpoint(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        received.set()
        await reader.read()  # to the end of the stream: never answered, only the client ends it
        closed.set()
        writer.close()

    server = await asyncio.start_server(endpoint, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    runner = HttpRunner(
        HttpConfig(capabilities=(Capability(name="work"),), url=f"http://127.0.0.1:{port}/run"),
        agent_id="h",
    )
    try:
        call = asyncio.create_task(runner.run(assigned(), no_progress))
        await asyncio.wait_for(received.wait(), 20)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(closed.wait(), 20)
    finally:
        await runner.aclose()
        server.close()
        await server.wait_closed()


def test_the_planner_passes_the_requests_context_to_every_task() -> None:
    """How ``{context.<key>}`` reaches an agent: the plan carries it in each task's inputs."""
    request = TaskRequest(
        **meta(Producer(component="test", instance="t"), correlation_id="r-1"),
        request_id="r-1",
        task_type="feature",
        description="Add a --verbose flag",
        context={"repository": "/srv/repo"},
    )
    plan = Planner(config=PlannerConfig(cache_size=0)).report(request).plan
    assert plan.tasks
    for task in plan.tasks:
        rendered = values_for(
            prompt="in {context.repository}",
            task_id=task.task_id,
            workflow_id="wf",
            attempt=1,
            inputs=task.inputs,
        )["prompt"]
        assert rendered == "in /srv/repo"
