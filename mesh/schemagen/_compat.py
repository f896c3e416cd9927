"""Is a new JSON Schema of an event still able to read everything the old one allowed?

Within one ``schema_version`` a change must be backward compatible: events already written (and
non-Python producers not yet updated) must stay valid. So a property may be added only as
optional; removing one, changing its type, narrowing its values or making it required needs a new
``schema_version`` plus an upcaster. This is a pure function over two schemas (as pydantic emits
them: local ``$defs``/``$ref``, ``anyOf`` for ``Optional``, nested objects and arrays), so it is
easy to test and knows nothing about files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ALL_TYPES = frozenset({"null", "boolean", "integer", "number", "string", "array", "object"})
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_MAX_REF_DEPTH = 32

Schema = Mapping[str, Any]


@dataclass(frozen=True, order=True)
class Incompatibility:
    """One backward-incompatible change, at a dotted path into the event (``[]`` = any item)."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem


def check_compatibility(old: Schema, new: Schema) -> list[Incompatibility]:
    """Every change in ``new`` that rejects data ``old`` accepted (empty list = compatible)."""
    comparison = _Comparison(old, new)
    comparison.node(old, new, "")
    return sorted(set(comparison.found))


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root, self.new_root = old_root, new_root
        self.found: list[Incompatibility] = []
        self._seen: set[tuple[str, str]] = set()

    def report(self, path: str, problem: str) -> None:
        self.found.append(Incompatibility(path, problem))

    def node(self, old: Schema, new: Schema, path: str) -> None:
        refs = (str(old.get("$ref", "")), str(new.get("$ref", "")))
        if any(refs):
            if refs in self._seen:  # a shared or recursive definition is compared once
                return
            self._seen.add(refs)
        old, new = _deref(old, self.old_root), _deref(new, self.new_root)
        old_alts, new_alts = _alternatives(old), _alternatives(new)
        if len(old_alts) == 1 and len(new_alts) == 1:
            self.single(
                _deref(old_alts[0], self.old_root), _deref(new_alts[0], self.new_root), path
            )
            return
        for alternative in old_alts:
            match = self._match(alternative, new_alts)
            if match is None:
                was = _describe(_types(alternative, self.old_root))
                now = _describe(_types(new, self.new_root))
                self.report(path, f"type changed: {was} is no longer accepted (now {now})")
            else:
                self.node(alternative, match, path)

    def _match(self, old_alt: Schema, new_alts: list[Schema]) -> Schema | None:
        old_types = _types(old_alt, self.old_root)
        fitting = [n for n in new_alts if _covers(_types(n, self.new_root), old_types)]
        for candidate in fitting:  # prefer the same definition, e.g. Optional[Model] -> Model
            if candidate.get("$ref") is not None and candidate.get("$ref") == old_alt.get("$ref"):
                return candidate
        return fitting[0] if fitting else None

    def single(self, old: Schema, new: Schema, path: str) -> None:
        old_types, new_types = _types(old, self.old_root), _types(new, self.new_root)
        if not _covers(new_types, old_types):
            self.report(path, f"type changed from {_describe(old_types)} to {_describe(new_types)}")
            return
        self._values(old, new, path)
        self._bounds(old, new, path)
        if "object" in old_types:
            self._object(old, new, path)
        if "array" in old_types:
            self._array(old, new, path)

    def _values(self, old: Schema, new: Schema, path: str) -> None:
        old_values = _allowed_values(old)
        new_values = _allowed_values(new)
        if new_values is None:
            return
        if old_values is None:
            self.report(path, f"values restricted to {_fmt_values(new_values)}")
            return
        dropped = [v for v in old_values if v not in new_values]
        if dropped:
            self.report(path, f"value(s) {_fmt_values(dropped)} no longer allowed")

    def _bounds(self, old: Schema, new: Schema, path: str) -> None:
        for key in _LOWER_BOUNDS:
            if key in new and (key not in old or new[key] > old[key]):
                self.report(path, f"{key} tightened from {old.get(key, 'none')} to {new[key]}")
        for key in _UPPER_BOUNDS:
            if key in new and (key not in old or new[key] < old[key]):
                self.report(path, f"{key} tightened from {old.get(key, 'none')} to {new[key]}")
        for key in ("pattern", "format"):
            if key in new and new[key] != old.get(key):
                self.report(path, f"{key} changed from {old.get(key)!r} to {new[key]!r}")

    def _object(self, old: Schema, new: Schema, path: str) -> None:
        old_props: Schema = old.get("properties", {})
        new_props: Schema = new.get("properties", {})
        old_required = set(old.get("required", ()))
        for name, old_prop in old_props.items():
            if name not in new_props:
                self.report(path, f"property '{name}' was removed")
            else:
                self.node(old_prop, new_props[name], _join(path, name))
        for name in sorted(set(new.get("required", ())) - old_required):
            if name in old_props:
                self.report(path, f"property '{name}' is now required (it was optional)")
            else:
                self.report(path, f"new required property '{name}'")
        old_extra, new_extra = (
            old.get("additionalProperties", True),
            new.get("additionalProperties"),
        )
        if new_extra is False and old_extra is not False:
            self.report(path, "additional properties are no longer allowed")
        elif isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            self.node(old_extra, new_extra, _join(path, "*"))
        if "propertyNames" in new:
            if "propertyNames" not in old:
                self.report(path, "property names are now restricted")
            else:
                self.node(old["propertyNames"], new["propertyNames"], _join(path, "<key>"))

    def _array(self, old: Schema, new: Schema, path: str) -> None:
        if isinstance(new.get("items"), Mapping):
            old_items = old.get("items")
            self.node(
                old_items if isinstance(old_items, Mapping) else {}, new["items"], path + "[]"
            )
        old_prefix, new_prefix = old.get("prefixItems", ()), new.get("prefixItems", ())
        for index, new_item in enumerate(new_prefix):
            old_item = old_prefix[index] if index < len(old_prefix) else {}
            self.node(old_item, new_item, f"{path}[{index}]")


def _deref(node: Schema, root: Schema) -> Schema:
    """Follow local ``$ref``s; keywords beside the ``$ref`` (2020-12 allows them) are kept."""
    for _ in range(_MAX_REF_DEPTH):
        ref = node.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return node  # no reference, or an external one (compared as an opaque name)
        target: Any = root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings}
    raise ValueError(f"$ref chain deeper than {_MAX_REF_DEPTH} at {node.get('$ref')!r}")


def _alternatives(node: Schema) -> list[Schema]:
    for key in ("anyOf", "oneOf"):
        if key in node:
            return [alt for group in node[key] for alt in _alternatives(group)]
    return [node]


def _types(node: Schema, root: Schema) -> frozenset[str]:
    """The JSON types a schema accepts (all of them for an unconstrained schema)."""
    node = _deref(node, root)
    if not node:
        return _ALL_TYPES
    alternatives = _alternatives(node)
    if len(alternatives) > 1:
        return frozenset().union(*(_types(alt, root) for alt in alternatives))
    declared = node.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(declared)
    values = _allowed_values(node)
    if values is not None:
        return frozenset(_json_type(v) for v in values)
    if "properties" in node or "additionalProperties" in node:
        return frozenset({"object"})
    if "items" in node or "prefixItems" in node:
        return frozenset({"array"})
    return _ALL_TYPES


def _covers(new: frozenset[str], old: frozenset[str]) -> bool:
    return all(t in new or (t == "integer" and "number" in new) for t in old)


def _allowed_values(node: Schema) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    if "enum" in node:
        return list(node["enum"])
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    kinds = {float: "number", str: "string", list: "array", dict: "object"}
    return kinds.get(type(value), "string")


def _describe(types: frozenset[str]) -> str:
    return "any" if types == _ALL_TYPES else " | ".join(sorted(types))


def _fmt_values(values: list[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
