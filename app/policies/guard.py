"""Conservative guard: keep cumulative cost within (1 + tolerance) of the baseline arm's.

In the style of conservative bandits (Wu et al. 2016): the inner policy's arm is played only
if, pessimistically, the campaign's cost so far plus that arm's cost stays within the budget
(1 + tolerance) x (what always playing the baseline would have cost). Otherwise the baseline
is played and the decision's reason is ``guard:baseline``. The baseline's counterfactual
cost is estimated by a per-arm log-cost model; unseen arms are assumed to cost twice the
largest cost seen. Enabled by ``policy_config={"guard": {"baseline_arm": i,
"tolerance": 0.1}, ...}`` on any policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.policies.base import Decision, Policy
from app.policies.ridge import model_input
from app.policies.wrapper import Wrapper


class ConservativeGuard(Wrapper):
    version = "1"

    def __init__(self, inner: Policy, baseline_arm: int, tolerance: float) -> None:
        super().__init__(inner)
        if not 0 <= int(baseline_arm) < inner.n_arms:
            raise ValueError(f"policy_config.guard.baseline_arm={baseline_arm} is out of range")
        if not float(tolerance) >= 0:
            raise ValueError(f"policy_config.guard.tolerance={tolerance} must be >= 0")
        self.baseline = int(baseline_arm)
        self.tol = float(tolerance)
        self.model = self.log_cost_model(lam=1.0)
        self.spent = 0.0  # actual cumulative cost
        self.baseline_spent = 0.0  # estimated cumulative cost of always-baseline
        self.max_cost = 0.0

    def _estimate(self, context: np.ndarray, arm: int, upper: bool) -> float:
        if self.model.n[arm] == 0:
            return 2.0 * self.max_cost if upper else self.max_cost
        mean, width, _f = self.model.predict(model_input(context))
        z = 2.0 if upper else 0.0
        return float(np.expm1(mean[arm] + z * width[arm] * 0.3))

    def _allowed(self, context: np.ndarray, arm: int) -> bool:
        if arm == self.baseline:
            return True
        if self.model.n[self.baseline] == 0:
            return False  # the baseline must be seen before anything else is risked
        b = self._estimate(context, self.baseline, upper=False)
        worst = self._estimate(context, arm, upper=True)
        return self.spent + worst <= (1.0 + self.tol) * (self.baseline_spent + b)

    def choose(self, context: np.ndarray, key: int) -> Decision:
        d = self.inner.choose(context, key)
        if self._allowed(context, d.arm):
            return d
        p = self.probabilities(context, key)
        return Decision(self.baseline, float(p[self.baseline]), "guard:baseline")

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        p = self.inner.probabilities(context, key, draws).copy()
        for a in range(self.n_arms):
            if a != self.baseline and p[a] > 0 and not self._allowed(context, a):
                p[self.baseline] += p[a]
                p[a] = 0.0
        return p

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        b = cost if arm == self.baseline else self._estimate(context, self.baseline, False)
        self.spent += cost
        self.baseline_spent += b
        self.max_cost = max(self.max_cost, cost)
        self.model.add(model_input(context), arm, float(np.log1p(cost)))
        self.inner.update(context, arm, cost)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "inner": self.inner.get_state(),
            "model": self.model.get_state(),
            "spent": [self.spent, self.baseline_spent, self.max_cost],
        }

    def _load_extra_state(self, s: dict[str, Any]) -> None:
        self.inner.set_state(s["inner"])
        self.model.set_state(s["model"])
        self.spent, self.baseline_spent, self.max_cost = (float(v) for v in s["spent"])
