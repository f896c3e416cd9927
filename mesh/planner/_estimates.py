"""Duration and cost per task type, learned from completed tasks (numpy).

Durations of agent work are positive and right-skewed, so each type is modelled as log-normal:
its sufficient statistics (count, sum, sum of logs, sum of squared logs) are all that is kept,
which makes an update O(1), the state tiny, and a rebuild from the event history an exact fold.
The template's figures are a prior worth ``prior_weight`` observations, so a new type starts at
the template's guess and the data takes over quickly (after 20 observations the prior weighs
~10 %). ``half_life`` (in observations) optionally discounts old data when agents change.

The reported mean is the shrunk arithmetic mean (robust even if durations are not log-normal);
the interval (p10 to p90) comes from the log-normal fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]

Z90 = 1.2815515655446004
"""Standard normal quantile at 0.9: the p10 to p90 band is mu ± Z90·sigma in log space."""

_FIELDS = ("n", "total", "s1", "s2", "cost_n", "cost_total")


@dataclass(frozen=True)
class Estimate:
    """What one attempt of a task type is expected to take and cost."""

    task_type: str
    mean_seconds: float
    p10_seconds: float
    p90_seconds: float
    mean_cost: float
    observations: float
    log_mu: float
    log_sigma: float


def fit_lognormal(samples: Sequence[float] | Floats) -> tuple[float, float]:
    """Maximum-likelihood (mu, sigma) of positive samples in log space."""
    logs = np.log(np.asarray(samples, dtype=np.float64))
    return float(logs.mean()), float(logs.std())


class Estimator:
    """Per-type log-normal duration and mean cost, with template priors for a cold start."""

    def __init__(
        self,
        *,
        prior_weight: float = 2.0,
        prior_sigma: float = 0.5,
        half_life: float | None = None,
    ) -> None:
        if prior_weight <= 0 or prior_sigma <= 0:
            raise ValueError("prior_weight and prior_sigma must be positive")
        self.prior_weight = prior_weight
        self.prior_sigma = prior_sigma
        self._decay = 0.5 ** (1 / half_life) if half_life else 1.0
        self._index: dict[str, int] = {}
        self._stats = np.zeros((len(_FIELDS), 16))
        self.observations = 0

    def _slot(self, task_type: str) -> int:
        slot = self._index.get(task_type)
        if slot is None:
            slot = self._index[task_type] = len(self._index)
            if slot >= self._stats.shape[1]:
                grown = np.zeros((len(_FIELDS), self._stats.shape[1] * 2))
                grown[:, : self._stats.shape[1]] = self._stats
                self._stats = grown
        return slot

    def observe(self, task_type: str, duration: float | None, cost: float | None = None) -> None:
        """Fold one completed attempt in (a missing or non-positive duration only adds cost)."""
        if duration is None and cost is None:
            return
        slot = self._slot(task_type)
        column = self._stats[:, slot]
        column *= self._decay
        if duration is not None and duration > 0:
            log = np.log(duration)
            column[0] += 1
            column[1] += duration
            column[2] += log
            column[3] += log * log
        if cost is not None and cost >= 0:
            column[4] += 1
            column[5] += cost
        self.observations += 1

    def estimate(self, task_type: str, prior_seconds: float, prior_cost: float = 0.0) -> Estimate:
        """The estimate for one type; the priors stand in for missing data."""
        means, mus, sigmas, costs, counts = self.estimate_many(
            [task_type], np.array([prior_seconds]), np.array([prior_cost])
        )
        z = Z90 * sigmas[0]
        return Estimate(
            task_type=task_type,
            mean_seconds=float(means[0]),
            p10_seconds=float(np.exp(mus[0] - z)),
            p90_seconds=float(np.exp(mus[0] + z)),
            mean_cost=float(costs[0]),
            observations=float(counts[0]),
            log_mu=float(mus[0]),
            log_sigma=float(sigmas[0]),
        )

    def estimate_many(
        self, task_types: Sequence[str], prior_seconds: Floats, prior_costs: Floats
    ) -> tuple[Floats, Floats, Floats, Floats, Floats]:
        """Vectorised estimates: (mean seconds, log mu, log sigma, mean cost, observations)."""
        slots = np.array([self._index.get(t, -1) for t in task_types], dtype=np.int64)
        known = slots >= 0
        stats = np.zeros((len(_FIELDS), len(task_types)))
        stats[:, known] = self._stats[:, slots[known]]
        n, total, s1, s2, cost_n, cost_total = stats
        w = self.prior_weight
        prior = np.maximum(np.asarray(prior_seconds, dtype=np.float64), 1e-3)
        sigma0 = self.prior_sigma
        mu0 = np.log(prior) - sigma0**2 / 2  # so the prior's mean is exactly `prior`
        weight = w + n
        mean = (w * prior + total) / weight
        mu = (w * mu0 + s1) / weight
        second = (w * (sigma0**2 + mu0**2) + s2) / weight
        sigma = np.sqrt(np.maximum(second - mu**2, 1e-6))
        cost = (w * np.asarray(prior_costs, dtype=np.float64) + cost_total) / (w + cost_n)
        return mean, mu, sigma, cost, n

    def snapshot(self) -> dict[str, tuple[float, ...]]:
        """The learned statistics per type (for tests and ``mesh plan --json``)."""
        return {
            t: tuple(round(float(v), 9) for v in self._stats[:, slot])
            for t, slot in sorted(self._index.items())
        }
