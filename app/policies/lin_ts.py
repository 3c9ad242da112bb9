"""``lin-ts``: linear Thompson sampling per arm over a feature map of the context."""

from __future__ import annotations

import numpy as np

from app.policies.base import Decision
from app.policies.linear import _LinearBase
from app.policies.ridge import model_input


class LinTSPolicy(_LinearBase):
    """Linear Thompson sampling (Agrawal and Goyal 2013) per arm; propensity by Monte Carlo."""

    name = "lin-ts"

    def _draws(self, context: np.ndarray, key: int, n: int) -> np.ndarray:
        mean, width, _f = self.model.predict(model_input(context))
        # Per arm the predictive is N(mean, (v*sigma*width)^2): sample it directly.
        z = self.rng(key).standard_normal((n, self.n_arms))
        return mean + self.alpha * self._sigma() * width * z

    def choose(self, context: np.ndarray, key: int) -> Decision:
        untried = np.flatnonzero(self.model.n == 0)
        if untried.size:
            return Decision(int(untried[0]), 1.0, "initial")
        winners = np.argmin(self._draws(context, key, 256), axis=1)
        arm = int(winners[0])
        return Decision(arm, float(np.mean(winners == arm)), "sample")
