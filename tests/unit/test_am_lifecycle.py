"""Agent templates, the supervisor's restart policy with real child processes, and the one-line
errors of ``mesh agents`` and ``mesh run agents`` (no broker needed)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest

from mesh.agentmanager.runtime._lifecycle import incarnation_id
from mesh.agentmanager.runtime._templates import load_templates
from mesh.errors import ConfigError, TemplateRefused
from mesh.supervisor import Child, RestartPolicy, Supervisor
from tests.helpers import assert_one_line_error, run_mesh

ROOT = Path(__file__).resolve().parents[2]
NOBODY = {"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MESH_REQUEST_TIMEOUT_MS": "2000"}


# -- templates ---------------------------------------------------------------------------------


def test_the_shipped_templates_cover_every_role_and_render_to_agent_run_args() -> None:
    templates = load_templates([ROOT / "agents" / "templates.yaml"])
    roles = {t.role for t in templates.all()}
    assert roles == {"core", "specialised", "utility", "hybrid"}
    for template in templates.all():
        args = template.run_args(f"{template.name}-1")
        assert args[:2] == ["agent", "run"]
        assert f"--id={template.name}-1" in args
    coder = templates.resolve("llm-coder", {})
    assert coder.run_args("c-1")[-3:] == ["--argv=claude", "--argv=-p", "--argv={prompt}"]


def test_config_overrides_a_template_and_is_validated_as_a_whole() -> None:
    templates = load_templates([ROOT / "agents" / "templates.yaml"])
    coder = templates.resolve("llm-coder", {"argv": ["codex", "exec", "{prompt}"]})
    assert coder.argv == ("codex", "exec", "{prompt}")
    assert coder.capabilities == templates.resolve("llm-coder", {}).capabilities
    base = templates.resolve("command", {"capabilities": ["x=3#fast"], "argv": ["tool"]})
    assert "--capability=x=3#fast" in base.run_args("x-1")


@pytest.mark.parametrize(
    ("name", "config", "reason"),
    [
        ("nope", {}, "no agent template named 'nope'; known: "),
        ("command", {}, "needs at least one capability"),
        ("command", {"capabilities": ["x"]}, "needs argv, or allow_task_command"),
        ("command", {"capabilities": ["x"], "argv": ["t", "{bogus}"]}, "unknown placeholder"),
        ("command", {"capabilities": ["x=11"], "argv": ["t"]}, "bad capability 'x=11'"),
        ("python", {}, "needs module"),
        ("shell", {"module": "m"}, "module is for python agents"),
        ("shell", {"colour": "red"}, "colour"),
        ("shell", {"kind": "python"}, "may not change a template's name or kind"),
        ("python-demo", {"argv": ["x"]}, "are for command agents"),
        ("http", {"capabilities": ["x"]}, "needs url"),
        ("http", {"url": "http://h/run"}, "needs at least one capability"),
        ("review-service", {"argv": ["x"]}, "are not for http agents"),
        ("shell", {"url": "http://h/run"}, "url and headers are for http agents"),
    ],
)
def test_a_bad_request_is_refused_with_its_reason(
    name: str, config: dict[str, object], reason: str
) -> None:
    templates = load_templates([ROOT / "agents" / "templates.yaml"])
    with pytest.raises(TemplateRefused, match=re.escape(reason)):
        templates.resolve(name, config)


def test_an_http_template_renders_url_headers_and_breaker_flags() -> None:
    templates = load_templates([ROOT / "agents" / "templates.yaml"])
    http = templates.resolve("review-service", {"headers": {"Authorization": "Bearer x"}})
    args = http.run_args("rs-1")
    assert "--url=http://127.0.0.1:8000/run" in args
    assert "--header=Authorization: Bearer x" in args
    assert "--breaker-fail-max=3" in args
    assert "--capability=review=6#http" in args
    assert not any(a.startswith("--argv") for a in args)


@pytest.mark.parametrize(
    "name", sorted(t.name for t in load_templates([ROOT / "agents" / "templates.yaml"]).all())
)
def test_every_shipped_template_starts_a_real_agent_command_line(name: str) -> None:
    """The rendered arguments parse: the agent gets as far as connecting to Kafka."""
    template = load_templates([ROOT / "agents" / "templates.yaml"]).resolve(name, {})
    run = run_mesh(*template.run_args(f"{name}-1"), env=NOBODY, timeout=60)
    assert "no Kafka broker answered" in assert_one_line_error(run)


def test_a_broken_template_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("templates:\n  bad:\n    kind: command\n")
    with pytest.raises(ConfigError, match="template 'bad'"):
        load_templates([path])


def test_restarted_agents_get_fresh_ids() -> None:
    ids = [incarnation_id("shell-1", n) for n in range(3)]
    assert ids == ["shell-1", "shell-1.r1", "shell-1.r2"]


# -- restart policy ----------------------------------------------------------------------------


def test_restart_delay_backs_off_and_gives_up_within_the_window() -> None:
    policy = RestartPolicy(max_restarts=3, window=60, backoff=0.5, max_backoff=1.5)
    assert policy.delay([], 100) == 0.5
    assert policy.delay([99], 100) == 1.0
    assert policy.delay([98, 99], 100) == 1.5  # capped
    assert policy.delay([97, 98, 99], 100) is None  # three restarts within the window
    assert policy.delay([10, 20, 99], 100) == 1.0  # old restarts slide out of the window


async def test_a_crashing_child_is_restarted_with_the_next_argv_until_the_limit() -> None:
    exits: list[tuple[int, float | None]] = []
    given_up = asyncio.Event()

    def on_exit(_child: Child, code: int, delay: float | None) -> None:
        exits.append((code, delay))
        if delay is None:
            given_up.set()

    def argv_for(n: int) -> list[str]:
        return [sys.executable, "-c", f"import sys; print('run {n}'); sys.exit(3)"]

    supervisor = Supervisor(on_exit=on_exit)
    policy = RestartPolicy(max_restarts=2, window=60, backoff=0.01, max_backoff=0.02)
    child = await supervisor.spawn("crashy", argv_for(0), restart=policy, argv_for=argv_for)
    try:
        async with asyncio.timeout(30):
            await given_up.wait()
    finally:
        await supervisor.stop_all(grace=1)
    assert [code for code, _ in exits] == [3, 3, 3]
    assert [delay is None for _, delay in exits] == [False, False, True]
    assert child.gave_up
    assert child.incarnation == 2
    assert child.argv == argv_for(2)
    assert "run 2" in child.lines


async def test_a_child_that_exits_cleanly_is_not_restarted() -> None:
    """Exit 0 unasked (Ctrl-C reached it with the terminal's process group) is not a crash."""
    exits: list[tuple[int, float | None]] = []
    supervisor = Supervisor(on_exit=lambda _c, code, delay: exits.append((code, delay)))
    argv = [sys.executable, "-c", "print('bye')"]
    child = await supervisor.spawn("clean", argv, restart=RestartPolicy(backoff=0.01))
    try:
        async with asyncio.timeout(30):
            assert child._watcher is not None
            await child._watcher
    finally:
        await supervisor.stop_all(grace=1)
    assert exits == [(0, None)]
    assert child.incarnation == 0
    assert not child.gave_up


async def test_a_child_stopped_on_purpose_is_not_restarted() -> None:
    exits: list[int] = []
    supervisor = Supervisor(on_exit=lambda _c, code, _d: exits.append(code))
    argv = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
    policy = RestartPolicy(backoff=0.01)
    child = await supervisor.spawn("sleepy", argv, restart=policy)
    code = await supervisor.stop("sleepy", grace=5)
    assert code == -signal.SIGTERM
    assert exits == []
    assert child.incarnation == 0
    assert not child.running


# -- CLI errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["agents", "spawn", "shell", "--set", "foo"], "bad --set 'foo': use FIELD=VALUE"),
        (["agents", "spawn", "shell", "--set", "argv=[unclosed"], "bad --set argv"),
        (["agents", "spawn"], "Missing argument 'template'"),
        (["agents", "spawn", "shell", "--count", "0"], "--count"),
        (["agents", "health", "--missed-heartbeats", "0"], "--missed-heartbeats"),
        (["agents", "list"], "could not read the agent registry"),
        (["agents", "health"], "could not read the agent registry"),
        (["agents", "terminate", "x-1"], "no Kafka broker answered"),
        (["run", "agents", "--templates", "/no/such/file.yaml"], "cannot read agent templates"),
    ],
)
def test_agents_commands_fail_in_one_line(args: list[str], expected: str) -> None:
    assert expected in assert_one_line_error(run_mesh(*args, env=NOBODY, timeout=60))


@pytest.mark.parametrize("command", ["list", "health", "spawn", "terminate"])
def test_every_agents_command_has_help_with_an_example(command: str) -> None:
    run = run_mesh("agents", command, "--help")
    assert run.code == 0, run.stderr
    assert "Example: mesh agents" in run.stdout
