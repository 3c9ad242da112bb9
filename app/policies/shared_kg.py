"""``shared-kg``: ``shared-ts``'s model of the log cost (arms described by parameters, one
Bayesian linear model shared across them, optionally a prior from history), with decisions
by the online knowledge gradient instead of Thompson sampling.

A decision picks the arm with the lowest ``cost - H x value``: ``cost`` the expected cost
of trying the arm now (under the fallback's budget when the campaign has one: an arm the
model suspects is slow costs at most the budget plus the fallback's solve), ``value`` what
one result of it is expected to save on each later decision
(:func:`app.policies.knowledge_gradient.knowledge_gradient`, averaged over the campaign's
last ``FUTURE`` contexts as stand-ins for those to come), ``H`` the number of decisions
still to come: ``policy_config.horizon`` minus the results so far when the campaign says
how many instances it will have, else the number of results so far (with no knowledge of
the total, as many more as seen so far). Exploration is thus spent only where it can pay
back within the campaign: with dozens of configurations and tens of solves, Thompson
sampling's share of exploration does not (see the solver-selection guide's tables).

Decisions are deterministic (propensity 1, reason ``explore`` when the arm is not the one
with the lowest expected cost): the same state and context give the same arm, so decisions
made together before any of their results (``max_in_flight`` > 1) repeat an arm for equal
contexts. Not thread-safe (as every policy). A decision costs O(K^2 FUTURE (NODES + p)) for
K arms and p model terms: ~6 ms for the krylov kind's 42 arms (Thompson sampling's: ~1 ms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.policies.base import Decision, Policy
from app.policies.knowledge_gradient import expected_costs, knowledge_gradient, stopped_costs
from app.policies.shared_ts import SharedTSPolicy
from tasks.errors import bounded

#: the campaign's most recent contexts (with the current one) over which a result's value
#: to later decisions is averaged
FUTURE = 16


class SharedKGPolicy(SharedTSPolicy):
    """Knowledge-gradient decisions on shared-ts's model; deterministic (propensity 1)."""

    name = "shared-kg"
    version = "2"

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        *,
        horizon: int | None = None,
        arms: np.ndarray | None = None,
        seed: int = 0,
        arm_values: Sequence[Mapping[str, Any]] | None = None,
        **model: Any,
    ) -> None:
        super().__init__(n_arms, n_features, arms=arms, seed=seed, arm_values=arm_values, **model)
        self.horizon = (
            None if horizon is None else int(bounded(horizon, "policy_config.horizon", 1, 1e9))
        )
        self.stop: tuple[int, float] | None = None

    def set_stop_rule(self, fallback: int, factor: float) -> None:
        self.stop = (int(fallback), float(factor))

    def _to_come(self) -> float:
        seen = float(self.n.sum())
        if self.horizon is not None:
            return max(self.horizon - seen - 1.0, 0.0)
        return max(seen, 1.0)

    def _future(self, x: np.ndarray) -> np.ndarray:
        """(m, d): ``x`` and the last ``FUTURE - 1`` contexts of the kept results."""
        rows = self._window.rows
        past = rows[-(FUTURE - 1) :, : self.d] if len(rows) else np.zeros((0, self.d))
        return np.concatenate([x[None], past], axis=0)

    def index(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K,) ``cost - H x value`` per arm at raw context ``x``, and (K,) the costs."""
        mu, V = self._moments(self._future(x))  # row 0: the current context
        var = np.einsum("mkp,mkp->mk", V, V)
        ref = float(mu.min())
        if self.stop is not None and self.have_y0:
            cost = stopped_costs(mu[0], var[0], self.s2, self.stop[0], self.stop[1], ref)
        else:
            cost = expected_costs(mu[0], var[0] + self.s2, ref)
        cross = np.ascontiguousarray((V @ V[0].T).transpose(2, 0, 1))  # (a, i, j)
        value = knowledge_gradient(mu, var, cross, var[0], self.s2, ref)
        # the value is in posterior-mean costs and a trial's cost includes its noise: the
        # cost is compared without it (exp(-s2/2) underflows to 0 harmlessly where costs
        # spanning many decades make exp(s2/2) overflow)
        return cost * math.exp(-self.s2 / 2.0) - self._to_come() * value, cost

    def choose(self, context: np.ndarray, key: int) -> Decision:
        return self.choose_among(context, key, np.ones(self.n_arms, dtype=bool))

    def choose_among(self, context: np.ndarray, key: int, allowed: np.ndarray) -> Decision:
        idx, cost = self.index(np.asarray(context, float)[: self.d])
        ok = np.asarray(allowed, dtype=bool)
        if not ok.any():
            raise ValueError("no arm is allowed")
        arm = int(np.argmin(np.where(ok, idx, np.inf)))
        cheapest = int(np.argmin(np.where(ok, cost, np.inf)))
        return Decision(arm, 1.0, "exploit" if arm == cheapest else "explore")

    def choose_many(self, contexts: np.ndarray, keys: Sequence[int]) -> list[Decision]:
        return Policy.choose_many(self, contexts, keys)  # one by one: shared-ts's is Thompson's

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        p = np.zeros(self.n_arms)
        p[self.choose(context, key).arm] = 1.0
        return p
