"""``squarecb``: inverse-gap weighting over a regression oracle (Foster and Rakhlin 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.policies.base import Decision, Policy
from app.policies.ridge import PerArmRidge, feature_map, model_input


def igw(pred: np.ndarray, gamma: float) -> np.ndarray:
    """Inverse-gap weights for costs: p_a = 1/(K + gamma gap_a), the rest on the best arm."""
    K = pred.size
    best = int(np.argmin(pred))
    p = 1.0 / (K + gamma * (pred - pred[best]))
    p[best] = 0.0
    p[best] = 1.0 - p.sum()
    return p


class SquareCBPolicy(Policy):
    name = "squarecb"

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        *,
        features: str = "chebyshev",
        degree: int = 3,
        lam: float = 1.0,
        gamma0: float = 1.0,
        log_cost: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(n_arms, n_features, **kw)
        self.model = PerArmRidge(n_arms, max(n_features, 1), feature_map(features, degree), lam)
        self.gamma0 = float(gamma0)
        self.log_cost = bool(log_cost)
        self.scale = 0.0

    def _probs(self, context: np.ndarray) -> np.ndarray:
        untried = np.flatnonzero(self.model.n == 0)
        if untried.size:
            p = np.zeros(self.n_arms)
            p[untried[0]] = 1.0
            return p
        mean, _w, _f = self.model.predict(model_input(context))
        scale = max(self.scale, 1e-12)
        gamma = self.gamma0 * np.sqrt(self.n_arms * (self.n_updates + 1))
        return igw(mean / scale, gamma)

    def choose(self, context: np.ndarray, key: int) -> Decision:
        p = self._probs(context)
        if p.max() >= 1.0:
            return Decision(int(np.argmax(p)), 1.0, "initial")
        arm = int(self.rng(key).choice(self.n_arms, p=p))
        return Decision(arm, float(p[arm]), "exploit" if arm == int(np.argmax(p)) else "explore")

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        return self._probs(context)

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        y = float(np.log1p(cost)) if self.log_cost else cost
        self.scale = max(self.scale, abs(y))
        self.model.add(model_input(context), arm, y)

    def _extra_state(self) -> dict[str, Any]:
        return {"model": self.model.get_state(), "scale": self.scale}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.model.set_state(state["model"])
        self.scale = float(state["scale"])
