"""``random``: uniform over arms (the logging policy that makes off-policy evaluation easy)."""

from __future__ import annotations

import numpy as np

from app.policies.base import Decision, Policy


class RandomPolicy(Policy):
    """Uniform random arm; propensity 1/K."""

    name = "random"

    def choose(self, context: np.ndarray, key: int) -> Decision:
        arm = int(self.rng(key).integers(self.n_arms))
        return Decision(arm, 1.0 / self.n_arms, "explore")

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        return None
