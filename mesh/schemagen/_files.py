"""Writing ``schemas/`` and checking that the committed copy is current and compatible.

``check`` regenerates everything in memory and compares it with the files; ``export`` writes the
files but refuses a breaking change to an already published version (unless forced), so the
compatibility rule cannot be bypassed simply by regenerating before a commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from mesh.errors import ConfigError
from mesh.events import REGISTRY, EventRegistry
from mesh.schemagen._asyncapi import ASYNCAPI_FILE, asyncapi_document, render_yaml
from mesh.schemagen._compat import check_compatibility
from mesh.schemagen._jsonschema import EVENTS_DIR, event_schema, render_json, schema_path
from mesh.schemagen._readme import README_FILE, readme

ProblemKind = Literal["missing", "stale", "breaking", "unknown"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a schemas directory, as one readable line."""

    kind: ProblemKind
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class ExportReport:
    """What ``export`` did (or, with breaking changes, refused to do)."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    breaking: list[Problem] = field(default_factory=list)


def render(registry: EventRegistry = REGISTRY) -> dict[str, str]:
    """Every generated file as text, by path relative to the schemas directory (sorted)."""
    files = {
        str(schema_path(cls.event_type(), cls.event_version())): render_json(event_schema(cls))
        for cls in registry
    }
    files[ASYNCAPI_FILE] = render_yaml(asyncapi_document(registry))
    files[README_FILE] = readme(registry)
    return dict(sorted(files.items()))


def check(directory: Path, registry: EventRegistry = REGISTRY) -> list[Problem]:
    """Problems with ``directory`` compared with the models (empty = up to date)."""
    if not directory.is_dir():
        raise ConfigError(
            f"no schemas directory at {directory}; run 'mesh schemas export' or pass --dir"
        )
    rendered = render(registry)
    problems: list[Problem] = []
    for rel, text in rendered.items():
        shown = _shown(directory, rel)
        path = directory / rel
        if not path.is_file():
            problems.append(Problem("missing", shown, "missing; run 'mesh schemas export'"))
            continue
        committed = path.read_text(encoding="utf-8")
        if committed == text:
            continue
        breaking = _breaking(shown, rel, committed, text)
        problems.extend(breaking or [Problem("stale", shown, "stale; run 'mesh schemas export'")])
    for rel in _unknown_files(directory, rendered, registry):
        problems.append(
            Problem(
                "unknown",
                _shown(directory, rel),
                "no event model or upcaster reads this type and version; delete the file "
                "(or run 'mesh schemas export')",
            )
        )
    return problems


def export(
    directory: Path, registry: EventRegistry = REGISTRY, *, force: bool = False
) -> ExportReport:
    """Write every generated file into ``directory``; nothing is written if a change breaks."""
    rendered = render(registry)
    report = ExportReport()
    for rel, text in rendered.items():
        path = directory / rel
        if path.is_file():
            committed = path.read_text(encoding="utf-8")
            if committed == text:
                report.unchanged.append(rel)
                continue
            report.breaking.extend(_breaking(_shown(directory, rel), rel, committed, text))
        report.written.append(rel)
    if report.breaking and not force:
        report.written.clear()
        return report
    for rel in report.written:
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered[rel], encoding="utf-8", newline="\n")
    for rel in _unknown_files(directory, rendered, registry):
        path = directory / rel
        path.unlink()
        if not any(path.parent.iterdir()):
            path.parent.rmdir()
        report.removed.append(rel)
    return report


def _breaking(shown: str, rel: str, committed: str, generated: str) -> list[Problem]:
    """Backward-incompatible differences of an event schema, with what to do about them."""
    if not rel.startswith(f"{EVENTS_DIR}/"):
        return []
    try:
        old = json.loads(committed)
    except ValueError:
        return []  # an unreadable file is merely stale: regenerating it loses nothing
    new = json.loads(generated)
    version = int(PurePosixPath(rel).stem.removeprefix("v"))
    advice = (
        f"bump {new.get('title', 'the model')}.schema_version to {version + 1} and register an "
        f"upcaster from v{version} (EventRegistry.add_upcaster), keeping v{version} readable"
    )
    return [
        Problem("breaking", shown, f"breaking change at {change}; {advice}")
        for change in check_compatibility(old, new)
    ]


def _unknown_files(directory: Path, rendered: dict[str, str], registry: EventRegistry) -> list[str]:
    """Event schema files no model renders and no upcaster reads (retired versions stay)."""
    events = directory / EVENTS_DIR
    if not events.is_dir():
        return []
    unknown: list[str] = []
    for path in sorted(events.glob("*/*.json")):
        rel = path.relative_to(directory).as_posix()
        if rel in rendered:
            continue
        event_type, stem = path.parent.name, path.stem
        readable = stem[1:].isdigit() and int(stem[1:]) in registry.versions(event_type)
        if not (stem.startswith("v") and readable):
            unknown.append(rel)
    return unknown


def _shown(directory: Path, rel: str) -> str:
    return (directory / rel).as_posix()
