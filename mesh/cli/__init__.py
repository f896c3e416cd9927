"""The ``mesh`` command line. Each command group lives in its own module and registers here."""

from __future__ import annotations

from mesh.cli import broker as _broker
from mesh.cli import schemas as _schemas
from mesh.cli import topics as _topics
from mesh.cli._app import app, main

app.add_typer(_broker.app, name="broker")
app.add_typer(_topics.app, name="topics")
app.add_typer(_schemas.app, name="schemas")

__all__ = ["app", "main"]
