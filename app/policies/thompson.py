"""``thompson``: non-contextual Gaussian Thompson sampling on log-cost per arm."""

from __future__ import annotations

import numpy as np

from app.policies.base import Decision, Policy


class ThompsonPolicy(Policy):
    """Normal model of log(1 + cost) per arm with a pooled noise estimate; weak prior."""

    name = "thompson"
    state_fields = ("counts", "sums", "sumsq")

    def __init__(self, n_arms: int, n_features: int, *, mc: int = 256, **kw: object) -> None:
        super().__init__(n_arms, n_features, **kw)  # type: ignore[arg-type]
        self.mc = int(mc)
        self.counts = np.zeros(n_arms)
        self.sums = np.zeros(n_arms)
        self.sumsq = np.zeros(n_arms)

    def _posterior(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.counts
        total = n.sum()
        grand = self.sums.sum() / total if total else 0.0
        # Pooled within-arm variance, floored; a prior pseudo-count of 1 at the grand mean.
        resid = self.sumsq - np.where(n > 0, self.sums**2 / np.maximum(n, 1), 0.0)
        var = max(float(resid.sum()) / max(total - np.count_nonzero(n), 1.0), 1e-2)
        mean = (self.sums + grand) / (n + 1.0)
        sd = np.sqrt(var / (n + 1.0)) * np.where(n > 0, 1.0, 10.0)
        return mean, sd

    def choose(self, context: np.ndarray, key: int) -> Decision:
        mean, sd = self._posterior()
        rng = self.rng(key)
        draws = mean + sd * rng.standard_normal((self.mc, self.n_arms))
        winners = np.argmin(draws, axis=1)
        arm = int(winners[0])
        p = float(np.mean(winners == arm))
        return Decision(arm, p, "sample")

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        mean, sd = self._posterior()
        d = mean + sd * self.rng(key).standard_normal((self.mc, self.n_arms))
        return np.bincount(np.argmin(d, axis=1), minlength=self.n_arms) / self.mc

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        y = float(np.log1p(cost))
        self.counts[arm] += 1
        self.sums[arm] += y
        self.sumsq[arm] += y * y
