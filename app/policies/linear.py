"""``linucb`` (and the base of ``lin-ts``): per-arm linear models on a feature map of the
context (costs are minimized, so LinUCB uses the lower confidence bound)."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.policies.base import Decision, Policy, softmin_argmin
from app.policies.ridge import PerArmRidge, feature_map, model_input


class _LinearBase(Policy):
    def __init__(
        self,
        n_arms: int,
        n_features: int,
        *,
        features: str = "chebyshev",
        degree: int = 3,
        lam: float = 1.0,
        alpha: float = 1.0,
        log_cost: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(n_arms, n_features, **kw)
        self.model = PerArmRidge(n_arms, max(n_features, 1), feature_map(features, degree), lam)
        self.alpha = float(alpha)
        self.log_cost = bool(log_cost)
        self.resid = [0.0, 0.0]  # running sum of squared residuals and count: noise scale

    def _sigma(self) -> float:
        return float(np.sqrt(max(self.resid[0] / self.resid[1], 1e-4))) if self.resid[1] else 1.0

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        y = float(np.log1p(cost)) if self.log_cost else cost
        x = model_input(context)
        if self.model.n[arm] > 0:
            mean, _w, _f = self.model.predict(x)
            self.resid[0] += (y - mean[arm]) ** 2
            self.resid[1] += 1
        self.model.add(x, arm, y)

    def _extra_state(self) -> dict[str, Any]:
        return {"model": self.model.get_state(), "resid": list(self.resid)}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.model.set_state(state["model"])
        self.resid = [float(v) for v in state["resid"]]


class LinUCBPolicy(_LinearBase):
    """Disjoint LinUCB (Li et al. 2010) with a lower bound; deterministic (propensity 1)."""

    name = "linucb"

    def choose(self, context: np.ndarray, key: int) -> Decision:
        untried = np.flatnonzero(self.model.n == 0)
        if untried.size:
            return Decision(int(untried[0]), 1.0, "initial")
        mean, width, _f = self.model.predict(model_input(context))
        return Decision(softmin_argmin(mean - self.alpha * self._sigma() * width), 1.0, "lcb")
