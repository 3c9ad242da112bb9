"""``shared-ts``: Thompson sampling among arms that are configurations described by
parameters (a Krylov method, a preconditioner, its parameters), with one Bayesian linear model
of the log cost shared across them.

The log cost of arm ``a`` at context ``x`` is modelled as ``g(a) . W . (1, z(x)) + b_a``:
``g(a)`` the arm's encoded parameters (:func:`app.policies.arm_features.arm_features`),
``z`` the context scaled to [-1, 1], ``W`` shared by every arm (prior sd ``shared_sd`` for a
parameter's main effect, half that for its change across the context range), ``b_a`` the
arm's own offset (prior sd ``offset_sd``, in log cost). One slow unpreconditioned solve
moves the estimate of every unpreconditioned arm; an arm's offset lets it differ from what
its parameters predict once it has been seen. Without parameters (plain arms) only the
offsets remain: independent arms.

With ``prior`` (:mod:`app.policies.cost_prior`: each arm's expected log cost relative to the
others, from history, and how far a new campaign may stray from it) the model above learns
what this campaign's costs add to the prior's; the first result sets the common level, and
the prior sds replace the wide defaults of ``shared_sd`` and ``offset_sd``. The prior's
factors (directions in which the arms moved together across the history) are terms of
their own, ``F_a . c`` with ``c`` standard normal: one result moves the arms tied to it.
A prior with a ``level`` (costs in an absolute unit, such as products of the matrix with a
vector) sets the common level before any result and adds one such term shared by every arm
(its sd the level's): the first result moves every arm's estimate by what it says of the
level, and its own arm's by what it says of that arm.

A draw picks, among the arms within ``tolerance`` (a ratio: 0.1 is 10%) of its cheapest,
the one with the lowest posterior mean (satisficing Thompson sampling): with dozens of
configurations and a sequence of tens to hundreds of solves, an arm is tried only where it
may beat the known ones by more than the tolerance, not wherever it might be best.

Costs are learnt as ``log(cost + floor)``, ``floor`` a thousandth of the first positive cost
(costs in seconds and in iterations alike: multiplicative noise is additive here); the noise
variance is re-estimated at each result from the residuals of the fit before it, with a
prior worth ``NOISE_WEIGHT`` results. A decision draws ``mc`` joint samples of the arms'
log costs from the posterior predictive and logs the share of draws that picked its arm as
the propensity. Not thread-safe (as every policy); an update costs O(p^3) for
p = q (d + 1) + r + K model terms (the posterior's Cholesky factor; r the prior's factors:
~210 terms for the krylov kind's 42 default arms, 5 features and 4 factors), plus a refit
from the last ``buffer`` results when the context range grows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.linalg import solve_triangular

from app.policies.arm_features import arm_features
from app.policies.base import Decision, Policy
from app.policies.cost_prior import CostPrior
from app.policies.features import RangeScaler
from app.policies.thompson_draws import choice_distributions, pick, pick_many
from app.policies.window import Window, Windowed
from tasks.errors import bounded

#: model terms above which the policy refuses the arms (its matrices are p x p)
MAX_TERMS = 512
#: the noise variance of a log cost before any result (sd ~0.3: a timing's spread of ~30%),
#: worth this many results against the residuals
NOISE_PRIOR, NOISE_WEIGHT = 0.1, 4.0


class SharedTSPolicy(Policy, Windowed):
    name = "shared-ts"
    version = "2"
    #: make_policy passes the arms' parameter mappings as ``arm_values``
    takes_arm_values: ClassVar[bool] = True

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        *,
        arms: np.ndarray | None = None,
        seed: int = 0,
        arm_values: Sequence[Mapping[str, Any]] | None = None,
        shared_sd: float | None = None,
        offset_sd: float | None = None,
        explore: float = 1.0,
        tolerance: float = 0.1,
        mc: int = 256,
        buffer: int = 4096,
        prior: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(n_arms, n_features, arms=arms, seed=seed)
        self.explore = bounded(explore, "policy_config.explore", 0.0, 100.0)
        self.tolerance = math.log1p(bounded(tolerance, "policy_config.tolerance", 0.0, 10.0))
        self.mc = int(bounded(mc, "policy_config.mc", 16, 4096))
        buf = int(bounded(buffer, "policy_config.buffer", 16, 1_000_000))
        given = arm_values is not None and len(arm_values) == n_arms
        self.G = arm_features(arm_values) if given else np.zeros((n_arms, 0))
        self.d = int(n_features)
        self.q = int(self.G.shape[1])
        self.cost_prior = None if prior is None else CostPrior.parse(prior, n_arms, self.d)
        shared_default, offsets = self._prior_sds()
        shared = bounded(
            shared_default if shared_sd is None else shared_sd, "policy_config.shared_sd", 1e-3, 1e3
        )
        if offset_sd is None:
            offset = offsets
        else:
            offset = np.full(n_arms, bounded(offset_sd, "policy_config.offset_sd", 1e-3, 1e3))
        # the prior's factors: arms that moved together across the history move together
        # here (one term each, prior sd 1: the factors carry the scale)
        self.F = np.zeros((n_arms, 0)) if self.cost_prior is None else self.cost_prior.factors
        level = None if self.cost_prior is None else self.cost_prior.level
        if level is not None:  # the common level, as one more factor loading every arm
            self.F = np.concatenate([self.F, np.full((n_arms, 1), level[1])], axis=1)
        self.p = self.q * (self.d + 1) + self.F.shape[1] + self.n_arms
        if self.p > MAX_TERMS:
            raise ValueError(
                f"shared-ts: {self.n_arms} arms x {self.q} parameter columns x "
                f"{self.d + 1} context terms (and {self.F.shape[1]} prior factors) is "
                f"{self.p} model terms, over {MAX_TERMS}"
            )
        # prior precisions, term by term: a parameter's main effect (sd ``shared_sd``), its
        # change across the context range (half that: a priori, context shifts a
        # configuration's cost by less than the configuration itself; split across the
        # context features, whose effects add up), the arm's own offset
        per_param = np.full(self.d + 1, (shared / 2.0) ** -2 * max(self.d, 1))
        per_param[0] = shared**-2
        self.prior = np.concatenate(
            [np.tile(per_param, self.q), np.ones(self.F.shape[1]), offset**-2]
        )
        self.scaler = RangeScaler(self.d)
        self._window = Window(self.d + 2, buf)  # rows: x..., arm, log cost
        self.S = np.zeros((self.p, self.p))  # sum of phi phi'
        self.r = np.zeros(self.p)  # sum of phi (y - y0)
        self.n = np.zeros(self.n_arms)
        # the common level: from the first result, or the prior's own level (then 0 here)
        self.y0 = 0.0
        self.have_y0 = level is not None
        self.floor = 0.0  # added to costs before the log (set by the first positive cost)
        self.yy = 0.0  # sum of (y - y0)^2
        self.s2 = NOISE_PRIOR  # the noise variance (log cost), re-estimated at each update
        self._post: tuple[np.ndarray, np.ndarray] | None = None

    def _prior_sds(self) -> tuple[float, np.ndarray]:
        """Default prior sds: (parameter main effects, per-arm offsets). Without a cost
        prior, wide (2.0: a factor of ~7 either way) and 0.5. With one, an arm's prior
        predictive variance is its ``prior.sd`` squared, half of it through the shared
        parameter effects (so that one arm's results still move its neighbours') and half
        through its own offset."""
        if self.cost_prior is None:
            return 2.0, np.full(self.n_arms, 0.5)
        var = self.cost_prior.sd**2
        active = float(np.mean(np.sum(self.G**2, axis=1))) if self.q else 0.0
        shared = math.sqrt(float(np.median(var)) / (2.0 * active)) if active > 0 else 1e-3
        return max(shared, 1e-3), np.sqrt(var / (2.0 if active > 0 else 1.0))

    def _prior_mean(self, X: np.ndarray) -> np.ndarray:
        """(n, K) the cost prior's mean log costs at the rows of ``X`` (zeros without one)."""
        if self.cost_prior is None:
            return np.zeros((len(X), self.n_arms))
        return self.cost_prior.mean(np.asarray(X, float).reshape(len(X), self.d))

    def _prior_at(self, x: np.ndarray, arm: int) -> float:
        """The prior's mean log cost of ``arm`` at one raw context ``x``."""
        return float(self._prior_mean(x[None])[0, arm])

    # ------------------------------------------------------------------ model
    def _terms(self, X: np.ndarray, n: int) -> np.ndarray:
        """(n, d + 1): 1 and the scaled context, per row of ``X`` (n raw contexts)."""
        X = np.asarray(X, float).reshape(-1, self.d) if self.d else np.zeros((n, 0))
        return np.concatenate([np.ones((len(X), 1)), self.scaler.scale(X)], axis=1)

    def _phi(self, X: np.ndarray) -> np.ndarray:
        """(n, K, p) model terms of every arm at each row of ``X`` (n x d, raw contexts)."""
        z = self._terms(X, len(X))
        n = len(z)
        shared = np.einsum("kq,nj->nkqj", self.G, z).reshape(n, self.n_arms, -1)
        factors = np.broadcast_to(self.F, (n, *self.F.shape))
        eye = np.broadcast_to(np.eye(self.n_arms), (n, self.n_arms, self.n_arms))
        return np.concatenate([shared, factors, eye], axis=2)

    def _phi_rows(self, X: np.ndarray, arms: np.ndarray) -> np.ndarray:
        """(n, p) model terms of arm ``arms[i]`` at row ``X[i]``: the rows :meth:`_phi`
        would give, without the other K - 1 arms' (a refit's buffer holds thousands)."""
        z = self._terms(X, len(arms))
        shared = np.einsum("nq,nj->nqj", self.G[arms], z).reshape(len(z), -1)
        return np.concatenate([shared, self.F[arms], np.eye(self.n_arms)[arms]], axis=1)

    def _posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, L^-1) of the coefficients, L the Cholesky factor of their precision;
        computed once per update, at the first decision after it."""
        if self._post is None:
            s2 = self.s2
            P = np.diag(self.prior) + self.S / s2
            L = np.linalg.cholesky(P)
            Linv = solve_triangular(L, np.eye(self.p), lower=True)
            mean = Linv.T @ (Linv @ (self.r / s2))
            self._post = (mean, Linv)
        return self._post

    def _moments(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) means of the arms' log costs at the rows of X and (n, K, p) factors ``V``:
        the covariance of two arms' means (at any two rows) is the dot product of their
        rows of ``V``."""
        mean, Linv = self._posterior()
        Phi = self._phi(X)
        V = Phi @ Linv.T  # one BLAS product: shared-kg asks for many rows at once
        return Phi @ mean + self.y0 + self._prior_mean(X), V

    def _predictive(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) means and (n, K, K) covariances of the arms' log costs at the rows of X."""
        mean, V = self._moments(X)
        return mean, np.einsum("nkp,njp->nkj", V, V)

    def _refit(self) -> None:
        rows = self._window.rows
        self.S = np.zeros((self.p, self.p))
        self.r = np.zeros(self.p)
        self.n = np.zeros(self.n_arms)
        self.yy = 0.0
        if len(rows):
            arms = rows[:, self.d].astype(np.int64)
            X = rows[:, : self.d]
            Phi = self._phi_rows(X, arms)
            res = rows[:, self.d + 1] - self.y0 - self._prior_mean(X)[np.arange(len(rows)), arms]
            self.S = Phi.T @ Phi
            self.r = Phi.T @ res
            self.yy = float(np.sum(res**2))
            self.n = np.bincount(arms, minlength=self.n_arms).astype(float)
        self._post = None

    # ------------------------------------------------------------------ interface
    def _distributions(self, X: np.ndarray, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        mean, cov = self._predictive(X)
        rngs = [self.rng(int(k)) for k in keys]
        return choice_distributions(
            mean, cov * self.explore**2, rngs, self.mc, None, 0.0, self.tolerance
        )

    def choose(self, context: np.ndarray, key: int) -> Decision:
        P, U = self._distributions(np.asarray(context, float)[None], [key])
        return pick(P[0], float(U[0]))

    def choose_many(self, contexts: np.ndarray, keys: Sequence[int]) -> list[Decision]:
        P, U = self._distributions(np.asarray(contexts, float), keys)
        return pick_many(P, U)

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        P, _U = self._distributions(np.asarray(context, float)[None], [key])
        return P[0]

    def estimated_cost(self, context: np.ndarray, arm: int) -> float | None:
        """exp of the posterior mean log cost, less the floor (None before any result, and
        for an arm not seen yet without a cost prior: the model knows nothing of how it
        compares): the mean :meth:`_predictive` gives for ``arm``, without the covariances
        of every arm."""
        if not self.have_y0 or (self.cost_prior is None and self.n[arm] == 0):
            return None
        x = np.asarray(context, float)[: self.d]
        f = self._phi_rows(x[None], np.array([arm]))[0]
        y = float(f @ self._posterior()[0]) + self.y0 + self._prior_at(x, arm)
        return max(math.exp(y) - self.floor, 0.0)

    def best_arm(self, context: np.ndarray) -> int:
        mean, _cov = self._predictive(np.asarray(context, float)[None])
        return int(np.argmin(mean[0]))

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        if self.floor == 0.0 and cost > 0:
            self.floor = 1e-3 * cost
        y = math.log(cost + self.floor) if cost + self.floor > 0 else math.log(1e-300)
        x = np.asarray(context, float)[: self.d]
        if not self.have_y0:  # the common level: the prior says how the arms compare to it
            self.y0, self.have_y0 = y - self._prior_at(x, arm), True
        mean = self._posterior()[0]  # before this result: the fit it is judged against
        self._window.append(np.concatenate([x, [arm, y]]))
        if self.d and self.scaler.observe(x):
            self._refit()  # the scaled contexts of every kept result moved
            mean = self._posterior()[0]
        else:
            f = self._phi_rows(x[None], np.array([arm]))[0]
            self.S += np.outer(f, f)
            res = y - self.y0 - self._prior_at(x, arm)
            self.r += f * res
            self.yy += res**2
            self.n[arm] += 1
        # the residual sum of squares at that fit, with a prior worth NOISE_WEIGHT results
        ssr = max(self.yy - 2.0 * mean @ self.r + mean @ self.S @ mean, 0.0)
        self.s2 = (NOISE_WEIGHT * NOISE_PRIOR + ssr) / (NOISE_WEIGHT + self.n.sum())
        self._post = None

    def _extra_state(self) -> dict[str, Any]:
        return {
            "S": self.S,
            "r": self.r,
            "n": self.n,
            "buf": self._window.rows.copy(),
            "lo": self.scaler.lo,
            "hi": self.scaler.hi,
            "y0": [self.y0, float(self.have_y0), self.floor],
            "noise": [self.yy, self.s2],
        }

    def _load_extra_state(self, s: dict[str, Any]) -> None:
        self._window.load(np.asarray(s["buf"], float).reshape(-1, self.d + 2))
        self.scaler.lo = np.asarray(s["lo"], float)
        self.scaler.hi = np.asarray(s["hi"], float)
        self.y0, have, self.floor = (float(v) for v in s["y0"])
        self.have_y0 = bool(have)
        self.yy, self.s2 = (float(v) for v in s["noise"])
        self.S, self.r, self.n = (np.asarray(s[k], float) for k in ("S", "r", "n"))
        self._post = None
