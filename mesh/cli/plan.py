"""``mesh plan FILE [--json]`` — plan a plain request without starting anything.

Reads a request file (type, description, requirements, constraints, priority, deadline,
context), plans it with the built-in templates plus ``MESH_PLANNER_TEMPLATES`` and ``--templates``,
and shows the stages, the critical path and the estimates. Nothing is published: this is the
planner's dry run. Exit 1 (one line on stderr) if the file is wrong or the plan is rejected.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from mesh.cli._app import mesh_command, settings_of
from mesh.cli._output import console, print_json, print_table, say
from mesh.errors import ConfigError, MeshError, PlanningError
from mesh.planner import (
    Planner,
    PlanReport,
    is_request_document,
    read_document,
    request_from_document,
    workflow_id_for,
)
from mesh.planner import format_seconds as seconds


def plan(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="Request file (YAML or JSON); '-' reads stdin.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    templates: Annotated[
        list[Path] | None,
        typer.Option(
            "--templates",
            help="Extra template directory (repeatable) [env MESH_PLANNER_TEMPLATES]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Plan the request in FILE and show the plan; nothing runs.

    Example: mesh plan examples/feature.yaml
    """
    settings = settings_of(ctx)
    if templates:
        extra = (*settings.planner_templates, *templates)
        settings = settings.model_copy(update={"planner_templates": extra})
    text = sys.stdin.read() if file == "-" else None
    source = "stdin.yaml" if file == "-" else file
    document = read_document(source, text=text)
    if isinstance(document, dict) and not is_request_document(document) and "tasks" in document:
        raise ConfigError(
            f"{source} is a plan file (it lists its tasks), not a request to plan; run it with "
            f"'{mesh_command()} submit {source}'"
        )
    request = request_from_document(document, source)
    planner = Planner.from_settings(settings)
    try:
        report = planner.report(request)
    except PlanningError as exc:
        if as_json:
            print_json(
                {
                    "status": "rejected",
                    "request_id": request.request_id,
                    "workflow_id": workflow_id_for(request.request_id),
                    "kind": exc.kind,
                    "reason": exc.reason,
                    "problems": list(exc.problems),
                }
            )
        raise MeshError(f"plan rejected: {exc.reason}") from exc
    if as_json:
        print_json(_as_json(report, request.task_type))
    else:
        _show(report, request.task_type)


def _as_json(report: PlanReport, task_type: str) -> dict[str, Any]:
    estimate = report.estimate
    return {
        "status": "planned",
        "request_id": report.request_id,
        "workflow_id": report.plan.plan_id,
        "type": task_type,
        "template_version": report.template_version,
        "choices": [
            {"path": p.path, "compound": p.compound, "method": m, "options": list(p.methods)}
            for p, m in report.choices
        ],
        "stages": [list(stage) for stage in report.stages],
        "critical_path": list(estimate.critical_path),
        "estimate": {
            "makespan_seconds": estimate.makespan_seconds,
            "makespan_p10_seconds": estimate.makespan_p10_seconds,
            "makespan_p90_seconds": estimate.makespan_p90_seconds,
            "critical_path_seconds": estimate.critical_path_seconds,
            "total_cost": estimate.total_cost,
            "peak": estimate.peak.model_dump(mode="json"),
            "peak_parallel": estimate.peak_parallel,
            "resource_seconds": dict(estimate.resource_seconds),
        },
        "slack_seconds": dict(report.slack),
        "warnings": list(report.warnings),
        "plan": report.plan.model_dump(mode="json"),
    }


def _show(report: PlanReport, task_type: str) -> None:
    plan, estimate = report.plan, report.estimate
    critical = set(estimate.critical_path)
    say(
        f"[bold]plan {plan.plan_id}[/bold] for request {escape(report.request_id)} "
        f"({escape(task_type)}): {len(plan.tasks)} tasks in {len(report.stages)} stages"
    )
    if report.choices:
        say(
            "methods: "
            + ", ".join(f"{escape(p.path or p.compound)} → {escape(m)}" for p, m in report.choices)
        )
    stage_of = {t: i + 1 for i, stage in enumerate(report.stages) for t in stage}
    rows = []
    for stage in report.stages:
        for task_id in stage:
            task = plan.task(task_id)
            start, _ = estimate.schedule[task_id]
            rows.append(
                [
                    stage_of[task_id],
                    ("★ " if task_id in critical else "  ") + task_id,
                    ", ".join(c.name for c in task.capabilities) or "any",
                    ", ".join(task.depends_on) or "—",
                    seconds(start),
                    seconds(task.estimated_duration_seconds or 0.0),
                    seconds(report.slack.get(task_id, 0.0)),
                    f"{task.estimated_cost or 0.0:.3g}",
                ]
            )
    print_table(
        None,
        ["stage", "task", "needs", "after", "start", "takes", "slack", "cost"],
        rows,
    )
    path = " → ".join(estimate.critical_path)
    say(f"critical path (★): {escape(path)} = {seconds(estimate.critical_path_seconds)}")
    limit = f" at max_parallelism {plan.max_parallelism}" if plan.max_parallelism else ""
    peak = estimate.peak
    say(
        f"estimated makespan {seconds(estimate.makespan_seconds)}{limit} "
        f"(p10 {seconds(estimate.makespan_p10_seconds)} – "
        f"p90 {seconds(estimate.makespan_p90_seconds)}), cost {estimate.total_cost:.3g}, "
        f"peak {peak.cpu:g} cpu / {peak.memory_mb} MiB, {estimate.peak_parallel} task(s) at once"
    )
    for warning in report.warnings:
        console.print(f"warning: {escape(warning)}", style="yellow", highlight=False)
