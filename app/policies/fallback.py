"""Fallback arm with a budget: every decision carries the cost after which its caller should
stop the chosen arm and solve with a safe arm instead, so a bad arm costs at most
``budget`` x (the fallback's expected cost) plus the fallback's own solve.

Enabled by ``policy_config={"fallback": {"arm": i, "budget": 3.0}, ...}`` on any policy.
The fallback's expected cost in a context is the inner policy's estimate where it has a
model across arms and contexts (``estimated_cost``: shared-ts), else a per-arm log-cost
ridge model's (the guard's); until the fallback arm has been seen once it is played (reason
``fallback:first``): no budget in the cost's unit can be set before that. With ``"level"``
(``{"offset", "slope", "center"}``: the fallback's expected log cost in products of the
instance's matrix with a vector, linear in the context, e.g. from history: the krylov kind
sets it) the inner policy chooses from the first decision on, with a budget of ``budget`` x
that many products (``budget_unit="matvec"``, converted where the trial runs), until the
fallback has a result of its own (a prior's estimate of a configuration never run, such as
shared-ts's history prior's, does not count: see :meth:`FallbackBudget.expected_cost`).
Where the policy learns costs in products (``policy_config.cost_unit="matvec"``: the
scheduler divides each result's time by the time of one product on its matrix) every budget
is in products.

A trial stopped at its budget, or that did not converge, is a censored observation ("at
least this much"): the policy learns the mean of its log-cost model's predictive
distribution beyond the bound (a truncated normal), with the spread of the model's own
one-step prediction errors, not the bound itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.policies.base import Decision, Policy
from app.policies.cost_prior import MAX_LOG, linear_in_context
from app.policies.ridge import model_input
from app.policies.wrapper import Wrapper
from tasks.errors import InputError

LEVEL = "policy_config.fallback.level"


def fallback_arm(config: dict[str, Any] | None) -> int | None:
    """``policy_config.fallback.arm`` (validated with the policy), or None."""
    fb = (config or {}).get("fallback")
    arm = fb.get("arm") if isinstance(fb, dict) else None
    return arm if isinstance(arm, int) and not isinstance(arm, bool) else None


@dataclass(frozen=True)
class FallbackLevel:
    """The fallback's expected cost before any result, in matrix-vector products: ``exp(offset
    + slope . (x - center))`` at raw context ``x``. Immutable."""

    offset: float
    slope: np.ndarray  # (d,)
    center: np.ndarray  # (d,)

    @classmethod
    def parse(cls, cfg: Any, n_features: int) -> FallbackLevel:
        """From ``policy_config.fallback.level``; InputError naming the field when malformed."""
        if not isinstance(cfg, Mapping) or "offset" not in cfg:
            raise InputError(LEVEL, "must be an object with 'offset' (and 'slope', 'center')")
        unknown = sorted(set(cfg) - {"offset", "slope", "center"})
        if unknown:
            raise InputError(LEVEL, f"takes 'offset', 'slope' and 'center'; got {unknown}")
        # at least one product, at most e^40 of them
        return cls(*linear_in_context(cfg, int(n_features), LEVEL, 0.0))

    def products(self, context: np.ndarray) -> float:
        """The expected number of products at one raw context (capped at e^40)."""
        x = np.asarray(context, float)[: len(self.slope)]
        return math.exp(min(self.offset + float(self.slope @ (x - self.center)), 2 * MAX_LOG))


class FallbackBudget(Wrapper):
    """Wraps ``inner``; not thread-safe (as every policy)."""

    version = "1"

    def __init__(
        self,
        inner: Policy,
        arm: int,
        budget: float,
        level: Mapping[str, Any] | None = None,
        unit: str | None = None,
    ) -> None:
        super().__init__(inner)
        self.fallback = self.arm_index(arm, "fallback.arm")
        ok = isinstance(budget, int | float) and not isinstance(budget, bool)
        if not ok or not 1.0 <= float(budget) <= 1e6:
            raise ValueError(f"policy_config.fallback.budget={budget!r} must be in 1..1e6")
        self.factor = float(budget)
        self.level = None if level is None else FallbackLevel.parse(level, inner.n_features)
        self.unit = unit  # the unit of the costs the policy learns: its budgets' unit
        inner.set_stop_rule(self.fallback, self.factor)
        # a prior worth a tenth of one solve: estimates follow the data from the first trials
        self.model = self.log_cost_model(lam=0.1)
        # running mean of squared one-step prediction errors (log units), with one prior
        # observation of 1.0 so that the first censored trial is not imputed as certain
        self.err2 = [1.0, 1.0]  # [sum, count]
        # the model fits log-costs minus the first one seen: ridge shrinks toward that
        # solve's cost, not toward a cost of 0 (which made every estimate too low)
        self.anchor: float | None = None

    # ------------------------------------------------------------------ choosing
    def expected_cost(self, context: np.ndarray, arm: int) -> float | None:
        """``arm``'s expected cost at ``context``, None until the arm has a result of its
        own: a model's estimate of a configuration it never ran is its ratio to those it did
        run, on the systems it ran them on (in a stream mixing families, several times too
        low on a family whose systems cost more; with a level, the level prices the
        fallback on each system's own matrix instead). Once seen: the inner policy's
        estimate where it has one (a model across arms and contexts knows how this context
        differs from the few where the fallback was played: after the first solve the
        fallback is rarely played again), else this wrapper's per-arm log-cost model's."""
        if self.model.n[arm] == 0:
            return None
        shared = self.inner.estimated_cost(context, arm)
        if shared is not None:
            return shared
        mean, _w, _f = self.model.predict(model_input(np.asarray(context, float)))
        return float(np.expm1(mean[arm] + (self.anchor or 0.0)))

    def budget_at(self, context: np.ndarray) -> float | None:
        """The budget in the cost's unit: ``budget`` x the fallback's expected cost; None
        while that is unknown (:meth:`expected_cost`)."""
        base = self.expected_cost(context, self.fallback)
        return None if base is None else max(self.factor * base, 1e-12)

    def _budgeted(self, d: Decision, context: np.ndarray) -> Decision:
        """``d`` with its budget: in the cost's unit where the fallback's cost is known, else
        in products from the level, else none."""
        if d.arm == self.fallback:
            return d
        budget = self.budget_at(context)
        if budget is None and self.level is not None:
            products = self.factor * self.level.products(context)
            return Decision(d.arm, d.propensity, d.reason, budget=products, budget_unit="matvec")
        return Decision(d.arm, d.propensity, d.reason, budget=budget, budget_unit=self.unit)

    def _first(self) -> bool:
        """The fallback must be played first: unseen, and no level to budget without it."""
        return self.model.n[self.fallback] == 0 and self.level is None

    def choose(self, context: np.ndarray, key: int) -> Decision:
        if self._first():
            return Decision(self.fallback, 1.0, "fallback:first")
        return self._budgeted(self.inner.choose(context, key), context)

    def choose_among(self, context: np.ndarray, key: int, allowed: np.ndarray) -> Decision:
        return self._budgeted(self.inner.choose_among(context, key, allowed), context)

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        if self._first():
            p = np.zeros(self.n_arms)
            p[self.fallback] = 1.0
            return p
        return self.inner.probabilities(context, key, draws)

    # ------------------------------------------------------------------ learning
    def _observe(self, x: np.ndarray, arm: int, y: float) -> None:
        """Add log-cost ``y``; the squared error of the prediction made before it counts."""
        if self.anchor is None:
            self.anchor = y
        if self.model.n[arm] > 0:
            mean, _w, _f = self.model.predict(x)
            self.err2[0] += float(mean[arm] + self.anchor - y) ** 2
            self.err2[1] += 1.0
        self.model.add(x, arm, y - self.anchor)

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        self._observe(model_input(context), arm, float(np.log1p(cost)))
        self.inner.update(context, arm, cost)

    def impute(self, context: np.ndarray, arm: int, bound: float) -> float:
        """E[cost | cost >= bound] under the arm's log-cost predictive distribution: a normal
        with the model's mean (the bound itself when the arm is unseen) and the variance of
        its prediction errors plus its own uncertainty."""
        lo = float(np.log1p(max(bound, 0.0)))
        x = model_input(np.asarray(context, float))
        sd2 = self.err2[0] / self.err2[1]
        if self.model.n[arm] > 0:
            mean, width, _f = self.model.predict(x)
            mu = float(mean[arm]) + (self.anchor or 0.0)
            sd2 += float(width[arm]) ** 2 * sd2
        else:
            mu = lo
        sd = math.sqrt(max(sd2, 1e-12))
        alpha = (lo - mu) / sd
        # inverse Mills ratio, computed stably in the far tail
        tail = 0.5 * math.erfc(alpha / math.sqrt(2.0))
        dens = math.exp(-0.5 * alpha * alpha) / math.sqrt(2.0 * math.pi)
        mills = dens / tail if tail > 1e-300 else alpha
        y = max(lo, mu + sd * mills)
        return float(np.expm1(y))

    def update_censored(
        self, context: np.ndarray, arm: int, bound: float, quality: float | None = None
    ) -> None:
        x = np.asarray(context, dtype=float)
        cost = self.impute(x, int(arm), float(bound))
        y = float(np.log1p(cost))
        if self.anchor is None:
            self.anchor = y
        self.model.add(model_input(x), int(arm), y - self.anchor)
        self.inner.update(x, int(arm), cost, quality)
        self.n_updates += 1

    def _extra_state(self) -> dict[str, Any]:
        return {
            "inner": self.inner.get_state(),
            "model": self.model.get_state(),
            "err2": list(self.err2),
            "anchor": self.anchor,
        }

    def _load_extra_state(self, s: dict[str, Any]) -> None:
        self.inner.set_state(s["inner"])
        self.model.set_state(s["model"])
        self.err2 = [float(v) for v in s["err2"]]
        self.anchor = None if s.get("anchor") is None else float(s["anchor"])
