"""``ucb1``: non-contextual lower-confidence-bound on costs normalized by the largest seen."""

from __future__ import annotations

import math

import numpy as np

from app.policies.base import Decision, Policy, softmin_argmin


class UCB1Policy(Policy):
    """Auer et al. (2002) for costs: mean/scale - c*sqrt(2 ln t / n). Deterministic."""

    name = "ucb1"
    state_fields = ("counts", "sums", "scale")

    def __init__(self, n_arms: int, n_features: int, *, c: float = 1.0, **kw: object) -> None:
        super().__init__(n_arms, n_features, **kw)  # type: ignore[arg-type]
        self.c = float(c)
        self.counts = np.zeros(n_arms)
        self.sums = np.zeros(n_arms)
        self.scale = 0.0

    def choose(self, context: np.ndarray, key: int) -> Decision:
        untried = np.flatnonzero(self.counts == 0)
        if untried.size:
            return Decision(int(untried[0]), 1.0, "initial")
        t = self.counts.sum()
        mean = self.sums / self.counts / max(self.scale, 1e-12)
        lcb = mean - self.c * np.sqrt(2.0 * math.log(t) / self.counts)
        return Decision(softmin_argmin(lcb), 1.0, "lcb")

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        self.counts[arm] += 1
        self.sums[arm] += cost
        self.scale = max(self.scale, cost)
