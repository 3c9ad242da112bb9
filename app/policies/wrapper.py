"""What a policy wrapped around another one shares (the guard, the fallback budget)."""

from __future__ import annotations

import numpy as np

from app.policies.base import Policy
from app.policies.ridge import PerArmRidge, feature_map


class Wrapper(Policy):
    """Around ``inner``: the same arms, features and seed; logged under the inner policy's
    name; the best arm and what quality teaches are the inner policy's. Not thread-safe."""

    def __init__(self, inner: Policy) -> None:
        super().__init__(inner.n_arms, inner.n_features, arms=inner.arm_positions, seed=inner.seed)
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]  # logged under the inner policy's name

    def arm_index(self, arm: object, name: str) -> int:
        """``arm`` if it is an arm index, else ValueError naming ``policy_config.<name>``."""
        if isinstance(arm, bool) or not isinstance(arm, int) or not 0 <= arm < self.n_arms:
            raise ValueError(
                f"policy_config.{name}={arm!r} is not an arm index in 0..{self.n_arms - 1}"
            )
        return arm

    def log_cost_model(self, lam: float) -> PerArmRidge:
        """A per-arm ridge model of log-costs on a quadratic map of the context."""
        return PerArmRidge(
            self.n_arms, max(self.n_features, 1), feature_map("chebyshev", 2), lam=lam
        )

    def best_arm(self, context: np.ndarray) -> int:
        return self.inner.best_arm(context)

    def set_stop_rule(self, fallback: int, factor: float) -> None:
        self.inner.set_stop_rule(fallback, factor)

    def estimated_cost(self, context: np.ndarray, arm: int) -> float | None:
        return self.inner.estimated_cost(context, arm)

    def _observe_quality(self, context: np.ndarray, arm: int, quality: float) -> None:
        self.inner._observe_quality(context, arm, quality)
