"""Constrained Thompson sampling: minimize cost (latency) subject to a learnt quality floor.

Two models, both Bayesian linear regressions on ``phi(x) = [1, sign(x) log1p |x|]``:

* **Cost.** ``log cost`` on joint features ``[phi(x), e_a (x) phi_s(x)]``: a model shared by all
  arms (how the context scales every arm) plus per-arm corrections on a few leading features, so
  an arm learns from the others' results (cold start) and still gets its own shape. Decisions
  sample the coefficients once (Thompson) and take the arm of least sampled cost among those
  allowed by the quality model.
* **Quality.** Per arm, the shortfall ``log(1 - quality)`` on ``phi_s(x)``, with a noise level
  estimated from its residuals. For a new batch the predictive distribution says whether the
  arm is *feasible* (upper bound below the floor's shortfall), *infeasible* (lower bound above
  it) or *uncertain*. Infeasible arms are never chosen; an uncertain arm may be chosen, and then
  the decision's reason is ``quality-probe`` so the worker runs the reference on that batch too
  (its output is served if the arm misses the floor). After ``probe_limit`` quality observations
  an arm still uncertain for a context counts as infeasible there (no endless probing).

Quality is a constraint, not a weight: no exchange rate between milliseconds and cosine.
The reference arm (fp32) defines quality 1 and is always feasible. Quality arrives only on
monitored trials (probes and the sampled fraction), via ``update(..., quality=q)``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from app.policies.base import PROBE, Decision, Policy


def _phi(x: np.ndarray) -> np.ndarray:
    return np.concatenate([[1.0], np.sign(x) * np.log1p(np.abs(x))])


class ConstrainedTSPolicy(Policy):
    name = "constrained-ts"
    version = "1"
    state_fields: ClassVar[tuple[str, ...]] = (
        "P",
        "b",
        "yy",
        "n_cost",
        "cheap",
        "Pq",
        "bq",
        "sseq",
        "nq",
    )

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        *,
        arms: np.ndarray | None = None,
        seed: int = 0,
        quality_floor: float | None = None,
        reference_arm: int = 0,
        arm_features: int = 2,
        quality_features: int = 0,
        z: float = 2.33,
        probe_limit: int = 20,
        draws: int = 32,
        prior_noise: float = 0.3,
        probe_quantile: float = 0.5,
        explore: float = 0.5,
    ) -> None:
        super().__init__(n_arms, n_features, arms=arms, seed=seed)
        if quality_floor is not None and not 0.0 < float(quality_floor) < 1.0:
            raise ValueError(f"policy_config.quality_floor={quality_floor} must be in (0, 1)")
        if not 0 <= int(reference_arm) < n_arms:
            raise ValueError(f"policy_config.reference_arm={reference_arm} is out of range")
        self.floor = None if quality_floor is None else float(quality_floor)
        self.reference = int(reference_arm)
        self.s = 1 + min(int(arm_features), n_features)  # phi_s: intercept + leading features
        # Quality is mostly a property of the arm: by default an intercept per arm only.
        self.sq = 1 + min(int(quality_features), n_features)
        self.d = 1 + n_features + n_arms * self.s
        self.z = float(z)
        self.probe_limit = int(probe_limit)
        self.draws = int(draws)
        self.prior_noise = float(prior_noise)
        if not 0.0 < float(probe_quantile) <= 1.0:
            raise ValueError(f"policy_config.probe_quantile={probe_quantile} must be in (0, 1]")
        self.probe_quantile = float(probe_quantile)
        self.explore = float(explore)  # scale of the posterior draws (1 = plain Thompson)
        # Running quantile of observed log costs: probes (which also pay for the reference)
        # are taken on batches predicted cheaper than it, where learning quality costs little.
        self.cheap = np.nan
        # Cost model: Gram matrix P, moment b, and sum of y^2 for the residual noise level.
        # The coefficients' prior is fixed (sd 1; 10 for the intercepts), not scaled by the
        # noise: with quiet timings a noise-scaled prior would stop exploring too early.
        self.P = np.zeros((self.d, self.d))
        prior_sd = np.ones(self.d)
        prior_sd[0] = 10.0
        prior_sd[1 + n_features :: self.s] = 3.0
        self.prior_prec = 1.0 / prior_sd**2
        self.b = np.zeros(self.d)
        self.yy = 0.0
        self.n_cost = 0
        # Quality model per arm (shortfall in log space).
        self.Pq = np.tile(np.eye(self.sq) * 0.1, (n_arms, 1, 1))
        self.bq = np.zeros((n_arms, self.sq))
        self.sseq = np.zeros(n_arms)
        self.nq = np.zeros(n_arms)

    # ------------------------------------------------------------------ features
    def _joint(self, x: np.ndarray) -> np.ndarray:
        """K x d: the joint feature row of every arm at context ``x``."""
        f = _phi(x)
        out = np.zeros((self.n_arms, self.d))
        out[:, : f.size] = f
        for a in range(self.n_arms):
            o = f.size + a * self.s
            out[a, o : o + self.s] = f[: self.s]
        return out

    def _noise(self) -> float:
        """Posterior noise variance: residual sum of squares of the ridge fit, shrunk to the
        prior level by a few pseudo-observations."""
        n0 = 4.0
        fit = np.linalg.solve(self.P + 1e-3 * np.eye(self.d), self.b)
        ssr = max(self.yy - float(self.b @ fit), 0.0)
        return float((n0 * self.prior_noise**2 + ssr) / (n0 + self.n_cost))

    # ------------------------------------------------------------------ quality
    def feasibility(self, x: np.ndarray) -> np.ndarray:
        """Per arm: 1 feasible, 0 uncertain, -1 infeasible (all 1 without a floor)."""
        status = np.ones(self.n_arms)
        if self.floor is None:
            return status
        thr = np.log(1.0 - self.floor)
        f = _phi(x)[: self.sq]
        for a in range(self.n_arms):
            if a == self.reference:
                continue
            if self.nq[a] < 1:
                status[a] = 0
                continue
            cov = np.linalg.inv(self.Pq[a])
            mean = float(f @ cov @ self.bq[a])
            noise = (1.0 + self.sseq[a]) / (1.0 + self.nq[a])
            sd = float(np.sqrt(noise * (1.0 + f @ cov @ f)))
            if mean + self.z * sd < thr:
                status[a] = 1
            elif mean - self.z * sd > thr or self.nq[a] >= self.probe_limit:
                status[a] = -1
            else:
                status[a] = 0
        return status

    # ------------------------------------------------------------------ decisions
    def _masked_draws(
        self, x: np.ndarray, key: int, restrict: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(feasibility per arm, draws x K sampled log costs with disallowed arms at +inf).
        Row 0 is the decision's own draw. The cost posterior is computed once per call.
        ``restrict`` (optional) removes arms the device cannot run; the reference stays."""
        status = self.feasibility(x)
        if restrict is not None:
            status = np.where(np.asarray(restrict, dtype=bool), status, -1.0)
            status[self.reference] = 1.0
        joint = self._joint(x)
        noise = self._noise()
        cov = np.linalg.inv(self.P + noise * np.diag(self.prior_prec))
        mean = cov @ self.b
        allowed = status >= 0
        # Uncertain arms (probes) only where the reference is predicted cheap.
        gated = self.probe_quantile < 1.0 and np.isfinite(self.cheap)
        if gated and float(joint[self.reference] @ mean) > self.cheap:
            allowed = status > 0
        chol = np.linalg.cholesky(cov * noise * self.explore**2 + 1e-12 * np.eye(self.d))
        z = self.rng(key).standard_normal((self.draws, self.d))
        theta = mean[None, :] + z @ chol.T
        return status, np.where(allowed[None, :], theta @ joint.T, np.inf)

    def choose(self, context: np.ndarray, key: int) -> Decision:
        return self.choose_among(context, key, np.ones(self.n_arms, dtype=bool))

    def choose_among(self, context: np.ndarray, key: int, allowed: np.ndarray) -> Decision:
        restrict = None if np.all(allowed) else allowed
        status, masked = self._masked_draws(np.asarray(context, dtype=float), key, restrict)
        picks = masked.argmin(axis=1)
        arm = int(picks[0])
        propensity = float(np.mean(picks == arm))
        return Decision(arm, propensity, PROBE if status[arm] == 0 else "policy")

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        _status, masked = self._masked_draws(np.asarray(context, dtype=float), key)
        return np.bincount(masked.argmin(axis=1), minlength=self.n_arms) / masked.shape[0]

    # ------------------------------------------------------------------ learning
    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        y = float(np.log(max(cost, 0.0) + 1e-3))
        f = self._joint(context)[arm]
        self.yy += y * y
        self.n_cost += 1
        if not np.isfinite(self.cheap):
            self.cheap = y
        else:  # stochastic-approximation quantile, step shrinking with the count
            step = max(0.05, 1.0 / np.sqrt(self.n_cost))
            self.cheap += step * (self.probe_quantile - float(y < self.cheap))
        self.P += np.outer(f, f)
        self.b += f * y

    def _observe_quality(self, context: np.ndarray, arm: int, quality: float) -> None:
        y = float(np.log(max(1.0 - quality, 1e-6)))
        f = _phi(context)[: self.sq]
        pred = float(f @ np.linalg.solve(self.Pq[arm], self.bq[arm])) if self.nq[arm] else y
        self.sseq[arm] += (y - pred) ** 2
        self.nq[arm] += 1
        self.Pq[arm] += np.outer(f, f)
        self.bq[arm] += f * y
