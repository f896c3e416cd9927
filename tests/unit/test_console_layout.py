"""The console's DAG layout: layers follow dependencies, crossings are reduced, the picture is
stable per plan and cached, names are escaped."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

from mesh.console import LayoutCache, layout, render_svg
from mesh.console._layout import _crossings, _inversions


def _diamond() -> dict[str, list[str]]:
    return {"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"]}


def test_every_dependency_points_to_a_later_layer() -> None:
    random.seed(7)
    ids = [f"t{i}" for i in range(300)]
    deps = {t: random.sample(ids[max(0, i - 30) : i], min(i, 3)) for i, t in enumerate(ids)}
    placed = {n.task_id: n for n in layout(deps).nodes}
    assert len(placed) == 300
    for task, needs in deps.items():
        for dep in needs:
            assert placed[dep].layer < placed[task].layer
            assert placed[dep].x < placed[task].x


def test_the_diamond_has_three_layers() -> None:
    assert layout(_diamond()).layers() == [["A"], ["B", "C"], ["D"]]


def test_sweeps_remove_avoidable_crossings() -> None:
    """Plan order crosses every edge pair (a1→b2, a2→b1); the layout uncrosses them."""
    deps = {"a1": [], "a2": [], "b1": ["a2"], "b2": ["a1"]}
    naive = [["a1", "a2"], ["b1", "b2"]]
    succs = {"a1": ["b2"], "a2": ["b1"], "b1": [], "b2": []}
    assert _crossings(naive, succs) == 1
    assert layout(deps).crossings == 0


def test_inversions_count_crossings() -> None:
    assert _inversions([0, 1, 2]) == 0
    assert _inversions([2, 1, 0]) == 3
    assert _inversions([1, 0, 1]) == 1


def test_the_same_plan_gets_the_same_picture_and_is_laid_out_once() -> None:
    cache = LayoutCache()
    names = {"A": "a", "B": "b", "C": "c", "D": "d"}
    first = cache.svg("plan-1", _diamond(), names)
    assert cache.svg("plan-1", _diamond(), names) == first
    assert cache.computed == 1
    changed = {**_diamond(), "E": ["D"]}
    cache.svg("plan-1", changed, {**names, "E": "e"})  # same id, another graph: laid out again
    assert cache.computed == 2


def test_svg_has_one_node_per_task_and_escapes_names() -> None:
    deps = {"A": [], "B&<x>": ["A"]}
    svg = render_svg(layout(deps, {"A": '<script>alert("x")</script>', "B&<x>": "b"}))
    root = ET.fromstring(svg)  # noqa: S314 - our own SVG; well-formed means nothing got in raw
    ns = "{http://www.w3.org/2000/svg}"
    nodes = root.findall(f".//{ns}g[@class='node s-pending']")
    assert [n.get("data-task") for n in nodes] == ["A", "B&<x>"]
    assert "<script>" not in svg
    assert len(root.findall(f".//{ns}path")) == 1
