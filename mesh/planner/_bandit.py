"""Which method to use for a compound task: Thompson sampling over observed outcomes (numpy).

Each method of a compound task is an arm with a Beta posterior over its per-attempt success
probability θ (uniform prior). To choose, the bandit draws θ for every applicable method and
picks the one with the best ``θ / duration``: a method whose attempts take ``d`` seconds and
succeed with probability θ needs ``d / θ`` seconds per success on average (failed attempts are
retried), so this is the draw's expected rate of successful work. Drawing instead of taking the
posterior mean keeps exploring methods that are still uncertain, and stops once the evidence is
clear. Durations come from the estimator (learned per task type), so they are observed too.

The state is counts only, rebuilt by folding the history (see ``_learning``), never from files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArmStats:
    """Observed outcomes of one method and its posterior mean success probability."""

    successes: float
    failures: float

    @property
    def mean(self) -> float:
        return (1 + self.successes) / (2 + self.successes + self.failures)


class MethodBandit:
    """Beta-Bernoulli Thompson sampling per compound task."""

    def __init__(self) -> None:
        self._arms: dict[str, dict[str, list[float]]] = {}
        self.observations = 0

    def observe(self, compound: str, method: str, success: bool) -> None:
        """Fold one attempt outcome of a task that ``compound/method`` produced."""
        counts = self._arms.setdefault(compound, {}).setdefault(method, [0.0, 0.0])
        counts[0 if success else 1] += 1
        self.observations += 1

    def stats(self, compound: str, method: str) -> ArmStats:
        s, f = self._arms.get(compound, {}).get(method, (0.0, 0.0))
        return ArmStats(s, f)

    def draw(
        self, compound: str, methods: Sequence[str], rng: np.random.Generator
    ) -> dict[str, float]:
        """One posterior draw of each method's success probability θ."""
        arms = self._arms.get(compound, {})
        counts = np.array([arms.get(m, (0.0, 0.0)) for m in methods], dtype=np.float64)
        theta = rng.beta(1 + counts[:, 0], 1 + counts[:, 1])
        return {m: float(t) for m, t in zip(methods, theta, strict=True)}

    def choose(
        self,
        compound: str,
        methods: Sequence[str],
        rng: np.random.Generator,
        durations: Sequence[float] | None = None,
        *,
        theta: dict[str, float] | None = None,
    ) -> str:
        """One method: the best ``θ / duration`` for a draw of θ (durations default to equal).

        Pass ``theta`` to score an earlier draw (the planner keeps its draws so that later
        optimisation compares methods under the same draw).
        """
        if not methods:
            raise ValueError("no methods to choose from")
        drawn = theta if theta is not None else self.draw(compound, methods, rng)
        values = np.array([drawn[m] for m in methods], dtype=np.float64)
        if durations is None:
            scale = np.ones(len(methods))
        else:
            scale = np.maximum(np.asarray(durations, dtype=np.float64), 1e-9)
        return methods[int(np.argmax(values / scale))]

    def snapshot(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Counts per compound and method (for tests and reports)."""
        return {
            c: {m: (v[0], v[1]) for m, v in sorted(arms.items())}
            for c, arms in sorted(self._arms.items())
        }
