"""``fixed``: always the same arm (a baseline, or a production default)."""

from __future__ import annotations

import numpy as np

from app.policies.base import Decision, Policy


class FixedPolicy(Policy):
    """Always chooses arm ``arm`` (index); propensity 1.0."""

    name = "fixed"

    def __init__(self, n_arms: int, n_features: int, *, arm: int = 0, **kw: object) -> None:
        super().__init__(n_arms, n_features, **kw)  # type: ignore[arg-type]
        if not 0 <= int(arm) < n_arms:
            raise ValueError(f"policy_config.arm={arm} is out of range 0..{n_arms - 1}")
        self.arm = int(arm)

    def choose(self, context: np.ndarray, key: int) -> Decision:
        return Decision(self.arm, 1.0, "fixed")

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        return None
