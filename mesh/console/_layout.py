"""A plan's DAG laid out in layers, rendered once as SVG (pure: no I/O).

Layers are networkx's topological generations, so every dependency points from a layer to a
later one (left to right). Within a layer the order starts from the plan's and is improved by
barycenter sweeps (each node moves towards the mean position of its neighbours in the layer
before, then after), keeping the order with the fewest edge crossings between adjacent layers.

The layout depends on the plan alone, so it is computed once per plan and cached; live updates
only change each node's class (its colour) and its small meta line, never a position, so the
picture stays still while a workflow runs.
"""

from __future__ import annotations

import html
import itertools
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

NODE_WIDTH = 168
NODE_HEIGHT = 40
LAYER_GAP = 64
ROW_GAP = 14
MARGIN = 20
LABEL_CHARS = 24
SWEEPS = 4


@dataclass(frozen=True)
class Placed:
    """One task's box: its layer, its rank within the layer and its top-left corner."""

    task_id: str
    name: str
    layer: int
    rank: int
    x: int
    y: int


@dataclass(frozen=True)
class Layout:
    """Every task placed, the dependency edges, and the size of the picture."""

    nodes: tuple[Placed, ...]
    edges: tuple[tuple[str, str], ...]
    width: int
    height: int
    crossings: int

    def layers(self) -> list[list[str]]:
        """Task ids per layer, in their order."""
        result: list[list[str]] = []
        for node in sorted(self.nodes, key=lambda n: (n.layer, n.rank)):
            while len(result) <= node.layer:
                result.append([])
            result[node.layer].append(node.task_id)
        return result


def layout(deps: Mapping[str, Sequence[str]], names: Mapping[str, str] | None = None) -> Layout:
    """Lay out tasks given as task id → the ids it depends on (in plan order)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(deps)
    graph.add_edges_from((dep, task) for task, needs in deps.items() for dep in needs)
    plan_order = {task: i for i, task in enumerate(deps)}
    layers = [
        sorted(generation, key=plan_order.__getitem__)
        for generation in nx.topological_generations(graph)
    ]
    preds = {task: list(graph.predecessors(task)) for task in graph}
    succs = {task: list(graph.successors(task)) for task in graph}
    layers, crossings = _order(layers, preds, succs)
    tallest = max(len(layer) for layer in layers)
    column = NODE_HEIGHT + ROW_GAP
    nodes: list[Placed] = []
    for number, layer in enumerate(layers):
        offset = (tallest - len(layer)) * column // 2
        for rank, task in enumerate(layer):
            nodes.append(
                Placed(
                    task_id=task,
                    name=(names or {}).get(task, task),
                    layer=number,
                    rank=rank,
                    x=MARGIN + number * (NODE_WIDTH + LAYER_GAP),
                    y=MARGIN + offset + rank * column,
                )
            )
    edges = tuple((dep, task) for task, needs in deps.items() for dep in needs)
    width = 2 * MARGIN + len(layers) * NODE_WIDTH + (len(layers) - 1) * LAYER_GAP
    height = 2 * MARGIN + tallest * column - ROW_GAP
    return Layout(tuple(nodes), edges, width, height, crossings)


def _order(
    layers: list[list[str]], preds: Mapping[str, list[str]], succs: Mapping[str, list[str]]
) -> tuple[list[list[str]], int]:
    """Barycenter sweeps down and up; the order with the fewest crossings seen."""
    best = [list(layer) for layer in layers]
    best_crossings = _crossings(best, succs)
    current = [list(layer) for layer in layers]
    for sweep in range(SWEEPS):
        downwards = sweep % 2 == 0
        indices = range(1, len(current)) if downwards else range(len(current) - 2, -1, -1)
        for i in indices:
            fixed = current[i - 1] if downwards else current[i + 1]
            neighbours = preds if downwards else succs
            current[i] = _by_barycenter(current[i], fixed, neighbours)
        found = _crossings(current, succs)
        if found < best_crossings:
            best, best_crossings = [list(layer) for layer in current], found
    return best, best_crossings


def _by_barycenter(
    here: list[str], fixed: list[str], neighbours: Mapping[str, list[str]]
) -> list[str]:
    """``here`` sorted by the mean relative position of each node's neighbours in ``fixed``;
    a node with no neighbour there keeps its own relative position."""
    where = {task: rank / max(1, len(fixed) - 1) for rank, task in enumerate(fixed)}
    own = {task: rank / max(1, len(here) - 1) for rank, task in enumerate(here)}

    def barycenter(task: str) -> float:
        known = [where[n] for n in neighbours[task] if n in where]
        return sum(known) / len(known) if known else own[task]

    return sorted(here, key=lambda t: (barycenter(t), own[t]))


def _crossings(layers: list[list[str]], succs: Mapping[str, list[str]]) -> int:
    """Edge crossings between adjacent layers (edges that skip layers are not counted)."""
    total = 0
    for upper, lower in itertools.pairwise(layers):
        rank = {task: i for i, task in enumerate(lower)}
        ends = [end for task in upper for end in sorted(rank[s] for s in succs[task] if s in rank)]
        total += _inversions(ends)
    return total


def _inversions(values: list[int]) -> int:
    """Pairs i < j with values[i] > values[j] (each is one crossing), in O(n log n)."""
    seen: list[int] = []
    count = 0
    for value in values:
        count += len(seen) - bisect_right(seen, value)
        seen.insert(bisect_right(seen, value), value)
    return count


def render_svg(placed: Layout) -> str:
    """The layout as an SVG document: one ``<g class="node">`` per task (``data-task`` is its
    id) whose class the page changes as the task's state changes, and one path per edge."""
    at = {node.task_id: node for node in placed.nodes}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" '
        f'viewBox="0 0 {placed.width} {placed.height}" '
        f'width="{placed.width}" height="{placed.height}" data-tasks="{len(placed.nodes)}">',
        '<g class="edges">',
    ]
    half = NODE_HEIGHT // 2
    for source, target in placed.edges:
        a, b = at[source], at[target]
        x1, y1, x2, y2 = a.x + NODE_WIDTH, a.y + half, b.x, b.y + half
        bend = (x2 - x1) // 2
        parts.append(
            f'<path data-from="{_attr(source)}" data-to="{_attr(target)}" '
            f'd="M{x1} {y1}C{x1 + bend} {y1} {x2 - bend} {y2} {x2} {y2}"/>'
        )
    parts.append('</g><g class="nodes">')
    for node in placed.nodes:
        label = node.name if len(node.name) <= LABEL_CHARS else node.name[: LABEL_CHARS - 1] + "…"
        parts.append(
            f'<g class="node s-pending" data-task="{_attr(node.task_id)}" '
            f'transform="translate({node.x} {node.y})">'
            f'<rect width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6"/>'
            f"<title>{html.escape(node.task_id)}: {html.escape(node.name)}</title>"
            f'<text class="label" x="8" y="16">{html.escape(label)}</text>'
            f'<text class="meta" x="8" y="31">{html.escape(node.task_id[:LABEL_CHARS])}</text>'
            "</g>"
        )
    parts.append("</g></svg>")
    return "".join(parts)


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


class LayoutCache:
    """Rendered SVG per plan, least recently used dropped beyond ``size`` plans.

    Keyed by the plan id and the graph itself: two plans under one id (a plan file submitted
    again after an edit) must not share a picture."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._svgs: OrderedDict[str, str] = OrderedDict()
        self.computed = 0
        """How many layouts were computed (a cached plan is not computed again)."""

    def svg(self, plan_id: str, deps: Mapping[str, Sequence[str]], names: Mapping[str, str]) -> str:
        """The plan's SVG, laid out on first use."""
        graph = (tuple((t, tuple(d)) for t, d in deps.items()), tuple(names.items()))
        key = f"{plan_id}:{hash(graph)}"
        found = self._svgs.get(key)
        if found is not None:
            self._svgs.move_to_end(key)
            return found
        found = render_svg(layout(deps, names))
        self.computed += 1
        self._svgs[key] = found
        while len(self._svgs) > self.size:
            self._svgs.popitem(last=False)
        return found
