"""Generated contracts: JSON Schema per event version, the AsyncAPI document, compatibility.

``schemas/`` in the repository is this package's output; ``mesh schemas export`` writes it and
``mesh schemas check`` proves it current and backward compatible.
"""

from mesh.schemagen._asyncapi import ASYNCAPI_FILE, asyncapi_document, message_id, render_yaml
from mesh.schemagen._compat import Incompatibility, check_compatibility
from mesh.schemagen._files import ExportReport, Problem, check, export, render
from mesh.schemagen._jsonschema import (
    DRAFT_2020_12,
    event_schema,
    render_json,
    schema_id,
    schema_path,
)
from mesh.schemagen._readme import README_FILE, readme

__all__ = [
    "ASYNCAPI_FILE",
    "DRAFT_2020_12",
    "README_FILE",
    "ExportReport",
    "Incompatibility",
    "Problem",
    "asyncapi_document",
    "check",
    "check_compatibility",
    "event_schema",
    "export",
    "message_id",
    "readme",
    "render",
    "render_json",
    "render_yaml",
    "schema_id",
    "schema_path",
]
