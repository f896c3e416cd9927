"""Choosing among a request's decompositions: the bandit's pick, then cost, deadline and budget.

One :class:`Search` per request. Its chooser draws θ for each choice point once (Thompson
sampling seeded by the request id, so a redelivered request makes the same choices) and keeps
the draws, so every later comparison judges methods under the same draw. From the bandit's pick
it tries the plans that differ in one method choice:

- a cheaper one that is no longer, unless the draw makes it more than ``cost_tolerance`` less
  likely to succeed (judging by the draw, not the posterior mean, keeps dearer methods explored
  while evidence is thin; once evidence is clear the draws agree with it);
- the fastest one, if the pick misses the deadline (rejecting with the numbers if even that
  misses it);
- the cheapest one that still meets the deadline, if the pick is over budget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

from mesh.errors import PlanningError
from mesh.events import ExecutionPlan
from mesh.planner import _format
from mesh.planner._assess import EPS, Assessor, Candidate
from mesh.planner._bandit import MethodBandit
from mesh.planner._htn import ChoicePoint, Chooser, Decomposer, Preview
from mesh.planner._request import RequestSpec
from mesh.planner._resources import ResourceEstimate


class Search:
    """The method-choice search for one request."""

    def __init__(
        self,
        spec: RequestSpec,
        decomposer: Decomposer,
        assessor: Assessor,
        bandit: MethodBandit,
        *,
        search_limit: int = 16,
        cost_tolerance: float = 0.1,
    ) -> None:
        self.spec = spec
        self.decomposer = decomposer
        self.assessor = assessor
        self.bandit = bandit
        self.search_limit = search_limit
        self.cost_tolerance = cost_tolerance
        self.draws: dict[str, dict[str, float]] = {}
        self.hurried = False
        """True when the deadline forced a faster method than the bandit's pick."""

    def chooser(self) -> Chooser:
        digest = hashlib.sha256(self.spec.request.request_id.encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        bandit, draws = self.bandit, self.draws

        def choose(point: ChoicePoint, previews: Mapping[str, Preview]) -> str:
            methods = list(previews)
            theta = draws.setdefault(point.path, bandit.draw(point.compound, methods, rng))
            for method in methods:  # a method new to this path (after a forced change)
                theta.setdefault(method, bandit.draw(point.compound, [method], rng)[method])
            durations = [previews[m].duration for m in methods]
            return bandit.choose(point.compound, methods, rng, durations, theta=theta)

        return choose

    def run(self) -> Candidate:
        """The bandit's pick, improved for cost, then held to the deadline and the budget."""
        first = self.assessor.evaluate(
            self.spec, self.decomposer.decompose(self.spec, self.chooser())
        )
        return self.meet_budget(self.meet_deadline(self.improve(first)))

    def alternatives(self, best: Candidate) -> list[Candidate]:
        """Plans that differ from ``best`` in one method choice (the ones that can be made)."""
        choices = best.decomposition.choices
        if not choices or len(choices) > self.search_limit:
            return []
        forced = {point.path: chosen for point, chosen in choices}
        found = []
        for point, chosen in choices:
            for method in point.methods:
                if method == chosen:
                    continue
                try:
                    decomposition = self.decomposer.decompose(
                        self.spec, self.chooser(), {**forced, point.path: method}
                    )
                    found.append(self.assessor.evaluate(self.spec, decomposition))
                except PlanningError:
                    continue
        return found

    def improve(self, best: Candidate) -> Candidate:
        """A cheaper method where the plan gets no longer and the draw allows it."""
        for candidate in self.alternatives(best):
            chosen = dict(best.decomposition.choices)
            changed = [
                (point, method)
                for point, method in candidate.decomposition.choices
                if point in chosen and chosen[point] != method
            ]
            reliable = all(
                self.draws.get(point.path, {}).get(method, 0.0)
                >= self.draws.get(point.path, {}).get(chosen[point], 1.0) - self.cost_tolerance
                for point, method in changed
            )
            if (
                reliable
                and candidate.cost < best.cost - EPS
                and candidate.makespan <= best.makespan + EPS
            ):
                best = candidate
        return best

    def meet_deadline(self, best: Candidate) -> Candidate:
        deadline = self.spec.limits.deadline
        if deadline is None:
            return best
        remaining = (deadline - self.spec.now).total_seconds()
        if remaining <= 0:
            raise PlanningError(
                "deadline",
                f"the deadline {deadline.isoformat(timespec='seconds')} passed "
                f"{_format.seconds(-remaining)} ago",
            )
        if best.makespan <= remaining:
            return best
        faster = min([best, *self.alternatives(best)], key=lambda c: c.makespan)
        check_deadline(self.spec, faster.plan, faster.estimate)  # raises if even that is late
        self.hurried = True
        return faster

    def meet_budget(self, best: Candidate) -> Candidate:
        budget = self.spec.limits.max_cost
        if budget is None or best.cost <= budget + EPS:
            return best
        deadline = self.spec.limits.deadline
        remaining = (deadline - self.spec.now).total_seconds() if deadline else float("inf")
        options = [c for c in self.alternatives(best) if c.makespan <= remaining]
        cheaper = min([best, *options], key=lambda c: c.cost)
        if cheaper.cost <= budget + EPS:
            return cheaper
        raise PlanningError(
            "budget",
            f"estimated cost {best.cost:.4g} exceeds the request's max_cost {budget:.4g} "
            f"(cheapest decomposition found: {cheaper.cost:.4g})",
        )


def check_deadline(spec: RequestSpec, plan: ExecutionPlan, estimate: ResourceEstimate) -> None:
    """PlanningError (``deadline``, with the numbers) if ``plan`` cannot meet the deadline."""
    deadline = spec.limits.deadline
    if deadline is None:
        return
    remaining = (deadline - spec.now).total_seconds()
    if estimate.makespan_seconds <= remaining:
        return
    durations = [plan.task(t).estimated_duration_seconds or 0.0 for t in estimate.critical_path]
    route = _format.path(estimate.critical_path, durations)
    needed = _format.seconds(estimate.makespan_seconds)
    if estimate.makespan_seconds > estimate.critical_path_seconds + EPS:
        what = (
            f"the plan needs {needed} at max_parallelism {plan.max_parallelism} (critical "
            f"path {_format.seconds(estimate.critical_path_seconds)}: {route})"
        )
    else:
        what = f"the critical path needs {needed} ({route})"
    raise PlanningError(
        "deadline",
        f"impossible deadline: {what} but the deadline "
        f"{deadline.isoformat(timespec='seconds')} is {_format.seconds(remaining)} away",
        [
            f"estimated makespan {estimate.makespan_seconds:.0f} s > {remaining:.0f} s "
            "until the deadline",
            f"critical path: {route}",
        ],
        needed_seconds=estimate.makespan_seconds,
        remaining_seconds=remaining,
    )
