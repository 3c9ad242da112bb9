"""``epsilon-greedy``: the arm of lowest mean cost, a uniform arm with probability epsilon."""

from __future__ import annotations

import numpy as np

from app.policies.base import Decision, Policy, softmin_argmin


class EpsilonGreedyPolicy(Policy):
    """Non-contextual; untried arms are tried first (in index order) before exploiting."""

    name = "epsilon-greedy"
    state_fields = ("counts", "sums")

    def __init__(self, n_arms: int, n_features: int, *, epsilon: float = 0.1, **kw: object) -> None:
        super().__init__(n_arms, n_features, **kw)  # type: ignore[arg-type]
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"policy_config.epsilon={epsilon} must be in [0, 1]")
        self.epsilon = float(epsilon)
        self.counts = np.zeros(n_arms)
        self.sums = np.zeros(n_arms)

    def choose(self, context: np.ndarray, key: int) -> Decision:
        untried = np.flatnonzero(self.counts == 0)
        if untried.size:
            return Decision(int(untried[0]), 1.0, "initial")
        greedy = softmin_argmin(self.sums / self.counts)
        rng = self.rng(key)
        arm = int(rng.integers(self.n_arms)) if rng.random() < self.epsilon else greedy
        p = self.epsilon / self.n_arms + (1.0 - self.epsilon) * (arm == greedy)
        return Decision(arm, float(p), "explore" if arm != greedy else "exploit")

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        self.counts[arm] += 1
        self.sums[arm] += cost
