"""``access/*.yaml`` → :class:`AccessDeclarations` (a mistake: one ``ConfigError`` line)."""

from __future__ import annotations

from pathlib import Path

import yaml

from mesh.access._model import AccessDeclarations, ComponentAccess, parse_access
from mesh.errors import ConfigError

DEFAULT_ACCESS_DIR = Path("access")


def load_access(directory: Path | None = None) -> AccessDeclarations:
    path = directory or DEFAULT_ACCESS_DIR
    files = sorted(path.glob("*.yaml")) if path.is_dir() else []
    if not files:
        raise ConfigError(f"no access declarations (*.yaml) in {path}; pass --dir")
    components: list[ComponentAccess] = []
    for file in files:
        try:
            raw = yaml.safe_load(file.read_text()) or {}
            components.extend(parse_access(raw, str(file)).components)
        except (yaml.YAMLError, ValueError) as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(first if isinstance(exc, ValueError) else f"{file}: {first}") from exc
    names = [c.component for c in components]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"components declared twice under {path}: {', '.join(twice)}")
    return AccessDeclarations(tuple(components))
