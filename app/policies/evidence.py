"""``evidence-ts``: Bayesian model averaging over a few model structures, weighted by each
one's predictive evidence on the campaign's own results.

The structures are smooth-ts models of the log cost that differ in what they assume:

* the full contextual model (the context features explain the costs);
* with 2-3 features, the same without the arm-profile coupling across contexts (the
  profile prior helps when the arms' profile moves slowly with the context, and hurts when
  it does not);
* a context-free model (one curve over the arms for every instance: the best fixed arm,
  learnt). Where the features explain little, it predicts as well with far fewer unknowns,
  its evidence wins, and the campaign does what the best fixed arm does instead of chasing
  noise.

Each result is scored, before any model learns from it, by every model's predictive density
of its log cost (prequential evidence: the running sum is each structure's log marginal
likelihood, so a simpler structure wins until the data support a richer one). Choices
sample a structure by its posterior weight and Thompson-sample within it; the propensity is
the exact mixture of the structures' choice distributions (those with weight above 1e-4).
Nothing here is a constant picked on a benchmark: the structures are fixed by what they
assume, their weights are learnt.

Not thread-safe; ``choose`` is pure; state = every model's state and the evidence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from app.policies.base import Decision, Policy
from app.policies.smooth_ts import SmoothTSPolicy

#: structures below this posterior weight are not consulted by a choice
MIN_WEIGHT = 1e-4


class EvidenceTSPolicy(Policy):
    name = "evidence-ts"
    version = "1"
    state_fields = ("evidence",)

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        *,
        arms: np.ndarray | None = None,
        seed: int = 0,
        **config: Any,
    ) -> None:
        super().__init__(n_arms, n_features, arms=arms, seed=seed)
        d = n_features

        def model(features: int, **extra: Any) -> SmoothTSPolicy:
            return SmoothTSPolicy(n_arms, features, arms=arms, seed=seed, **{**config, **extra})

        self.models: list[SmoothTSPolicy] = [model(d)]
        self.labels = ["contextual"]
        if d >= 2 and "shape_slope" not in config:
            self.models.append(model(d, shape_slope=0.0))
            self.labels.append("contextual, no profile coupling")
        if d >= 1:
            self.models.append(model(0))
            self.labels.append("context-free")
        self.evidence = np.zeros(len(self.models))

    # ------------------------------------------------------------------ weights
    def weights(self) -> np.ndarray:
        """Posterior probability of each structure (equal prior odds)."""
        e = self.evidence - self.evidence.max()
        w = np.exp(e)
        return w / w.sum()  # type: ignore[no-any-return]

    def _x(self, i: int, context: np.ndarray) -> np.ndarray:
        return np.asarray(context, float)[: self.models[i].n_features]

    # ------------------------------------------------------------------ interface
    def _distribution(self, context: np.ndarray, key: int) -> tuple[np.ndarray, float]:
        w = self.weights()
        p = np.zeros(self.n_arms)
        for i, m in enumerate(self.models):
            if w[i] >= MIN_WEIGHT:
                p += w[i] * m._distribution(self._x(i, context), key)[0]
        return p / p.sum(), float(self.rng(key ^ 0x5A5A5A).random())

    def choose(self, context: np.ndarray, key: int) -> Decision:
        p, u = self._distribution(context, key)
        arm = min(int(np.searchsorted(np.cumsum(p), u, side="right")), self.n_arms - 1)
        while p[arm] == 0.0:
            arm -= 1
        return Decision(arm, float(p[arm]), "exploit" if p[arm] >= 0.5 else "explore")

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        return self._distribution(context, key)[0]

    def best_arm(self, context: np.ndarray) -> int:
        i = int(np.argmax(self.weights()))
        return self.models[i].best_arm(self._x(i, context))

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        if all(m.have_y0 for m in self.models):  # the first result sets the level: not scored
            for i, m in enumerate(self.models):
                self.evidence[i] += log_predictive(m, self._x(i, context), arm, cost)
        for i, m in enumerate(self.models):
            m.update(self._x(i, context), arm, cost)

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict[str, Any]:
        return {"models": [m.get_state() for m in self.models]}

    def _load_extra_state(self, s: dict[str, Any]) -> None:
        for m, st in zip(self.models, s["models"], strict=True):
            m.set_state(st)


def log_predictive(m: SmoothTSPolicy, x: np.ndarray, arm: int, cost: float) -> float:
    """log p(log(1 + cost) | model's data so far, x, arm): Gaussian with the model's mean
    and its parameter plus noise variance."""
    y = float(np.log1p(cost))
    r, phi_s_phi, _ = m._surprise(x, arm, y)
    v = max(phi_s_phi, 0.0) + m._sigma2()
    return -0.5 * (math.log(2.0 * math.pi * v) + r * r / v)
