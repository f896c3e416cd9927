"""Workshop agents: the small real pipeline ``mesh dev`` runs for the planner's templates.

Each workflow gets a scratch git repository (``$MESH_WORKSHOP_DIR/<workflow id>``, by default
``<state dir>/workshop/<workflow id>``). The steps write real files generated deterministically
from the request (no LLM here), run the real formatter (``ruff format``) and test runner
(``pytest``) from the interpreter's own environment, and commit with ``git``:

- ``design``: ``DESIGN.md`` from the prompt; commit.
- ``code``: ``feature.py`` (the request's requirements as data); format; commit.
- ``test``: ``test_feature.py``, (re)written from what the repository holds; format; commit if
  changed; run the tests, unless the step only writes them (``write_tests``) or there is no
  ``feature.py`` yet (bugfix's ``reproduce``). ``context.fail_tests: true`` generates a failing
  test, so the task fails with pytest's output.
- ``review``: the formatter's check and a clean tree; reports the commits.

Serve them with ``mesh agent run --kind python --module mesh.agents.workshop``.
"""

from __future__ import annotations

import ast
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mesh.agents._sdk import TaskContext, agent
from mesh.errors import TaskError
from mesh.settings import Settings

WORKSHOP_DIR_ENV = "MESH_WORKSHOP_DIR"
CAPABILITIES = ("design", "code", "test", "review")
"""The template capabilities the workshop serves (``mesh dev``'s capability map)."""

OUTPUT_LIMIT = 4_000
"""Characters of a failing command's output kept in the task's error."""

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "mesh workshop",
    "GIT_AUTHOR_EMAIL": "workshop@mesh.invalid",
    "GIT_COMMITTER_NAME": "mesh workshop",
    "GIT_COMMITTER_EMAIL": "workshop@mesh.invalid",
}


def workshop_root() -> Path:
    """Where the scratch repositories live."""
    configured = os.environ.get(WORKSHOP_DIR_ENV)
    return Path(configured) if configured else Settings().state_dir / "workshop"


def repository_of(workflow_id: str) -> Path:
    """The scratch repository of ``workflow_id`` (its id is made path-safe)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in workflow_id).lstrip(".")
    return workshop_root() / (safe or "workflow")


def _run(argv: list[str], repo: Path, what: str) -> str:
    """Run ``argv`` (no shell) in ``repo``; its output, or a task error carrying it."""
    env = {
        **os.environ,
        **_GIT_IDENTITY,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        argv, cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise TaskError(
            f"{what} failed (exit {done.returncode}): {' '.join(argv[-3:])}\n"
            f"{output[-OUTPUT_LIMIT:]}",
            kind="command_failed",
        )
    return output


@contextmanager
def _repository(workflow_id: str) -> Iterator[Path]:
    """The workflow's repository, created on first use, held under a lock (steps of one
    workflow may run at once)."""
    repo = repository_of(workflow_id)
    repo.mkdir(parents=True, exist_ok=True)
    with (repo.parent / f"{repo.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (repo / ".git").exists():
            _run(["git", "init", "--quiet", "--initial-branch", "main"], repo, "git init")
        yield repo


def _commit(repo: Path, message: str) -> str | None:
    """Commit everything; the new commit's hash, or None when nothing changed."""
    _run(["git", "add", "--all"], repo, "git add")
    if not _run(["git", "status", "--porcelain"], repo, "git status"):
        return None
    _run(["git", "commit", "--quiet", "--message", message], repo, "git commit")
    return _run(["git", "rev-parse", "HEAD"], repo, "git rev-parse")


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _request_lines(ctx: TaskContext) -> list[str]:
    text = ctx.prompt or ctx.task.name
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line.lstrip("-* ") for line in lines if line.strip("-* ")][:20]


def _requirements(repo: Path, ctx: TaskContext) -> list[str]:
    """The design's bullets when there is a design, else the module's list, else the prompt's
    lines: so a test written beside the implementation expects what the module holds."""
    design = repo / "DESIGN.md"
    if design.exists():
        return [line[2:] for line in design.read_text().splitlines() if line.startswith("- ")]
    module = repo / "feature.py"
    if module.exists():
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "REQUIREMENTS":
                value = ast.literal_eval(node.value)
                if isinstance(value, list):
                    return [str(item) for item in value]
    return _request_lines(ctx)


def _module_text(lines: list[str]) -> str:
    items = "".join(f"    {line!r},\n" for line in lines)
    # Deliberately loose layout: the formatter has real work to do.
    return (
        '"""Generated by the mesh workshop from the request."""\n'
        f"REQUIREMENTS = [\n{items}]\n\n"
        "def requirements( ) -> list[str]:\n"
        "    return list( REQUIREMENTS )\n"
        "def count( ) -> int :\n"
        "    return len(REQUIREMENTS)\n"
    )


def _test_text(expected: int) -> str:
    return (
        "import feature\n\n"
        "def test_count_matches_the_requirements( ):\n"
        f"    assert feature.count() == {expected}\n\n"
        "def test_requirements_are_text( ):\n"
        "    assert all(isinstance(r, str) and r for r in feature.requirements())\n"
    )


def _step(ctx: TaskContext) -> str:
    planner = ctx.inputs.get("planner")
    step = planner.get("type") if isinstance(planner, Mapping) else None
    return step if isinstance(step, str) else ctx.task.task_id


def _flag(ctx: TaskContext, key: str) -> bool:
    value = ctx.context.get(key)
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes"))


@agent(capabilities=["design"])
async def design(ctx: TaskContext) -> dict[str, Any]:
    """Write ``DESIGN.md`` from the prompt and commit it."""
    with _repository(ctx.workflow_id) as repo:
        body = "\n".join(f"- {line}" for line in _request_lines(ctx))
        (repo / "DESIGN.md").write_text(f"# Design ({ctx.task_id})\n\n{body}\n")
        commit = _commit(repo, f"{ctx.task_id}: design")
    return {"repository": str(repo), "commit": commit, "files": ["DESIGN.md"]}


@agent(capabilities=["code"])
async def code(ctx: TaskContext) -> dict[str, Any]:
    """Write ``feature.py`` from the request, format it, commit."""
    with _repository(ctx.workflow_id) as repo:
        (repo / "feature.py").write_text(_module_text(_requirements(repo, ctx)))
        formatted = _run(_python("ruff", "format", "feature.py"), repo, "ruff format")
        commit = _commit(repo, f"{ctx.task_id}: implement")
    return {"repository": str(repo), "commit": commit, "files": ["feature.py"], "format": formatted}


@agent(capabilities=["test"])
async def test(ctx: TaskContext) -> dict[str, Any]:
    """Write ``test_feature.py`` (failing with ``context.fail_tests``), run pytest, commit."""
    step = _step(ctx)
    with _repository(ctx.workflow_id) as repo:
        # Written from what the repository holds (design, else module, else prompt), so a test
        # written before the fix (bugfix's reproduce) is brought up to date by a later step.
        expected = len(_requirements(repo, ctx)) + (1 if _flag(ctx, "fail_tests") else 0)
        (repo / "test_feature.py").write_text(_test_text(expected))
        _run(_python("ruff", "format", "test_feature.py"), repo, "ruff format")
        out: dict[str, Any] = {"repository": str(repo), "step": step}
        out["commit"] = _commit(repo, f"{ctx.task_id}: tests")
        if step == "write_tests":
            out["pytest"] = "not run: this step only writes the tests"
        elif not (repo / "feature.py").exists():
            out["pytest"] = "not run: no feature.py yet (tests written before the code)"
        else:
            out["pytest"] = _run(
                _python("pytest", "-q", "-p", "no:cacheprovider", "test_feature.py"),
                repo,
                "tests",
            )
    return out


@agent(capabilities=["review"])
async def review(ctx: TaskContext) -> dict[str, Any]:
    """Check the formatting and that every change is committed; list the commits."""
    with _repository(ctx.workflow_id) as repo:
        _run(_python("ruff", "format", "--check", "."), repo, "ruff format --check")
        dirty = _run(["git", "status", "--porcelain"], repo, "git status")
        if dirty:
            raise TaskError(f"uncommitted changes:\n{dirty}", kind="review_failed")
        has_commits = bool(
            _run(["git", "rev-list", "--all", "--max-count=1"], repo, "git rev-list")
        )
        log = _run(["git", "log", "--format=%h %s"], repo, "git log") if has_commits else ""
    return {"repository": str(repo), "commits": log.splitlines()}
