"""A holdout: one arm played on a fixed share of decisions, so that the campaign measures
what it saves against that arm.

A policy that learns fast stops playing a bad baseline after a few trials, and then no
estimator can say from the log how much the campaign saved against it (the report says
"not enough data"). With ``policy_config={"holdout": {"arm": i, "share": 0.05}}`` each
decision plays arm ``i`` with probability ``share`` (drawn from the decision's own key,
independently of the context) and the inner policy's choice otherwise. The logged
propensity is the mixture's, ``share * 1[a = i] + (1 - share) * p_inner(a)``, so the
doubly robust estimates of the report stay unbiased. Forced plays have reason
``holdout``; they cost ``share`` x (the arm's excess cost) on average.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.policies.base import Decision, Policy
from app.policies.wrapper import Wrapper

#: the largest share a holdout may take (beyond it the campaign is mostly a fixed arm)
MAX_SHARE = 0.5


class Holdout(Wrapper):
    """Wraps ``inner``; not thread-safe (as every policy)."""

    version = "1"

    def __init__(self, inner: Policy, arm: int, share: float) -> None:
        super().__init__(inner)
        self.arm = self.arm_index(arm, "holdout.arm")
        ok = isinstance(share, int | float) and not isinstance(share, bool)
        if not ok or not 0.0 < float(share) <= MAX_SHARE:
            raise ValueError(f"policy_config.holdout.share={share!r} must be in (0, {MAX_SHARE}]")
        self.share = float(share)

    def _forced(self, key: int) -> bool:
        return bool(self.rng(int(key) ^ 0x401D5EED).random() < self.share)

    def choose(self, context: np.ndarray, key: int) -> Decision:
        d = self.inner.choose(context, key)
        s = self.share
        if self._forced(key):
            inner_p = (
                d.propensity
                if d.arm == self.arm
                else float(self.inner.probabilities(context, key)[self.arm])
            )
            return Decision(self.arm, s + (1.0 - s) * inner_p, "holdout")
        p = (1.0 - s) * d.propensity + (s if d.arm == self.arm else 0.0)
        return Decision(d.arm, p, d.reason, budget=d.budget)

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        p = (1.0 - self.share) * self.inner.probabilities(context, key, draws)
        p[self.arm] += self.share
        return p

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        self.inner.update(context, arm, cost)

    def update_censored(
        self, context: np.ndarray, arm: int, bound: float, quality: float | None = None
    ) -> None:
        self.inner.update_censored(context, arm, bound, quality)
        self.n_updates += 1

    def _extra_state(self) -> dict[str, Any]:
        return {"inner": self.inner.get_state()}

    def _load_extra_state(self, s: dict[str, Any]) -> None:
        self.inner.set_state(s["inner"])
