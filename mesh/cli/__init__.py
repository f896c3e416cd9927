"""The ``mesh`` command line. Each command group lives in its own module and registers here."""

from __future__ import annotations

from mesh.cli import access as _access
from mesh.cli import agent as _agent
from mesh.cli import agents as _agents
from mesh.cli import broker as _broker
from mesh.cli import control as _control
from mesh.cli import dev as _dev
from mesh.cli import dlq as _dlq
from mesh.cli import groups as _groups
from mesh.cli import logs as _logs
from mesh.cli import plan as _plan
from mesh.cli import replay as _replay
from mesh.cli import resources as _resources
from mesh.cli import run as _run
from mesh.cli import schemas as _schemas
from mesh.cli import submit as _submit
from mesh.cli import tail as _tail
from mesh.cli import topics as _topics
from mesh.cli import ui as _ui
from mesh.cli import watch as _watch
from mesh.cli._app import app, main

app.add_typer(_broker.app, name="broker")
app.add_typer(_agent.app, name="agent")
app.add_typer(_agents.app, name="agents")
app.command("dev")(_dev.dev)
app.add_typer(_topics.app, name="topics")
app.add_typer(_access.app, name="access")
app.add_typer(_run.app, name="run")
app.command("replay")(_replay.replay)
app.command("status")(_watch.status)
app.command("watch")(_watch.watch)
app.command("list")(_watch.list_workflows)
app.add_typer(_schemas.app, name="schemas")
app.add_typer(_resources.app, name="resources")
app.command("plan")(_plan.plan)
app.command("submit")(_submit.submit)
app.command("tail")(_tail.tail)
app.command("logs")(_logs.logs)
app.add_typer(_dlq.app, name="dlq")
app.add_typer(_groups.app, name="groups")
app.command("ui")(_ui.ui)
for _name in ("pause", "resume", "cancel", "retry", "signal"):
    app.command(_name)(getattr(_control, _name))

__all__ = ["app", "main"]
