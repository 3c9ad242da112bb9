"""``smooth-ts``: our policy. Thompson sampling on a Bayesian P-spline of log-cost over the
joint (context, arm) grid.

What it exploits that the paper's learners do not:

* cost spans orders of magnitude: it models log(1 + cost), where errors are relative;
* cost is smooth in the context: a piecewise-linear (hat) basis on ``knots`` knots per
  feature over the range learnt online, with a second-difference smoothness prior;
* arms are ordered points of a continuum: when the arm positions are 1-D and ordered, a
  second-difference prior across neighbouring arms, so one trial informs its neighbours and
  the curve is extrapolated linearly toward the unexplored side (unimodal curves get
  bisected rather than enumerated).

The posterior is Gaussian: mean ``mu`` and covariance ``S`` over the G**d x K grid values,
updated by recursive least squares (O(P^2) per result, P = G**d K). A choice samples the K
arm values at the context jointly (a K x K covariance) and takes the cheapest; the
propensity is the Monte Carlo frequency of that arm under the same posterior. When the
learnt context range changes the model refits from its bounded buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.policies.base import Decision, Policy
from app.policies.features import RangeScaler, hat_basis


def second_diff(n: int) -> np.ndarray:
    if n < 3:
        return np.zeros((0, n))
    D = np.zeros((n - 2, n))
    for i in range(n - 2):
        D[i, i : i + 3] = (1.0, -2.0, 1.0)
    return D


def first_diff(n: int) -> np.ndarray:
    if n < 2:
        return np.zeros((0, n))
    D = np.zeros((n - 1, n))
    for i in range(n - 1):
        D[i, i : i + 2] = (-1.0, 1.0)
    return D


class SmoothTSPolicy(Policy):
    """Not thread-safe; ``choose`` is pure; update O(P^2); state = (mu, S, buffer, range)."""

    name = "smooth-ts"
    version = "1"

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        *,
        knots: int | None = None,
        arm_smooth: float = 4.0,
        context_smooth: float = 4.0,
        ridge: float = 1e-4,
        explore: float = 1.0,
        noise: float = 0.1,
        min_noise: float = 0.02,
        mc: int = 256,
        buffer: int = 20_000,
        ordered_arms: bool | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(n_arms, n_features, **kw)
        d = n_features
        if knots is None:
            knots = {0: 1, 1: 10, 2: 6}.get(d, 4)
        if d > 0 and knots < 2:
            raise ValueError("policy_config.knots must be >= 2 with context features")
        if d > 3:
            raise ValueError("smooth-ts supports up to 3 context features; use lin-ts")
        self.d = d
        self.G = 1 if d == 0 else int(knots)
        self.J = self.G**d  # context grid points
        self.P = self.J * n_arms
        pos = self.arm_positions
        if ordered_arms is None:
            ordered_arms = pos.shape[1] == 1 and bool(np.all(np.diff(pos[:, 0]) > 0))
        self.ordered = bool(ordered_arms)
        self.explore = float(explore)
        self.noise0 = float(noise)
        self.min_noise = float(min_noise)
        self.mc = int(mc)
        self.buffer_size = int(buffer)
        self.prior = self._prior_precision(float(ridge), float(arm_smooth), float(context_smooth))
        self.scaler = RangeScaler(max(d, 1))
        self._reset_posterior()
        self.y0 = 0.0
        self.have_y0 = False
        self.resid_ss = 0.0
        self.resid_n = 0.0
        self.buf = np.zeros((0, d + 2))  # rows: context..., arm, y

    # ----------------------------------------------------------------- model
    def _prior_precision(self, ridge: float, arm_s: float, ctx_s: float) -> np.ndarray:
        K, G, d = self.n_arms, self.G, self.d
        Lam = ridge * np.eye(self.P)
        if self.ordered and K >= 3:
            Da = second_diff(K)
            Lam += arm_s * np.kron(np.eye(self.J), Da.T @ Da)
            Da1 = first_diff(K)
            Lam += 0.01 * arm_s * np.kron(np.eye(self.J), Da1.T @ Da1)
        if d > 0 and G >= 3:
            Dc = second_diff(G)
            Mc = Dc.T @ Dc
            for j in range(d):  # smooth along each context axis of the tensor grid
                mats = [np.eye(G)] * d
                mats[j] = Mc
                full = mats[0]
                for m in mats[1:]:
                    full = np.kron(full, m)
                Lam += ctx_s * np.kron(full, np.eye(K))
        return Lam

    def _reset_posterior(self) -> None:
        self.S = np.linalg.inv(self.prior)
        self.mu = np.zeros(self.P)

    def _basis(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Active context-grid indices and weights at x."""
        if self.d == 0:
            return np.zeros(1, dtype=np.int64), np.ones(1)
        w = hat_basis(self.scaler.scale(x)[None, :], self.G)[0]
        idx = np.flatnonzero(w > 0)
        return idx, w[idx]

    def _sigma2(self) -> float:
        if self.resid_n < 5:
            return self.noise0**2
        return max(self.resid_ss / self.resid_n, self.min_noise**2)

    def _rls(self, x: np.ndarray, arm: int, y: float, w: float) -> float:
        """One recursive-least-squares step; returns the predictive residual."""
        gi, gw = self._basis(x)
        idx = gi * self.n_arms + arm
        Sphi = self.S[:, idx] @ gw
        phiSphi = float(gw @ Sphi[idx])
        r = y - self.y0 - float(gw @ self.mu[idx])
        k = Sphi / (1.0 / w + phiSphi)
        self.mu += k * r
        self.S -= np.outer(k, Sphi)
        return r * r - phiSphi  # noise part of the squared predictive error

    def _refit(self) -> None:
        self._reset_posterior()
        w = 1.0 / self._sigma2()
        Lam = self.prior.copy()
        h = np.zeros(self.P)
        for row in self.buf:
            gi, gw = self._basis(row[: self.d])
            idx = gi * self.n_arms + int(row[self.d])
            Lam[np.ix_(idx, idx)] += w * np.outer(gw, gw)
            h[idx] += w * gw * (row[self.d + 1] - self.y0)
        self.S = np.linalg.inv(Lam)
        self.S = (self.S + self.S.T) / 2.0
        self.mu = self.S @ h

    def _predictive(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gi, gw = self._basis(x)
        K = self.n_arms
        idx = (gi[None, :] * K + np.arange(K)[:, None])  # (K, J_active)
        mean = (self.mu[idx] * gw).sum(axis=1) + self.y0
        flat = idx.reshape(-1)
        sub = self.S[np.ix_(flat, flat)].reshape(K, len(gi), K, len(gi))
        cov = np.einsum("j,ajbk,k->ab", gw, sub, gw)
        return mean, (cov + cov.T) / 2.0

    def _draws(self, context: np.ndarray, key: int) -> np.ndarray:
        mean, cov = self._predictive(np.asarray(context, float))
        cov = cov * self.explore**2
        jitter = 1e-10 * max(float(np.trace(cov)) / self.n_arms, 1e-12)
        try:
            L = np.linalg.cholesky(cov + jitter * np.eye(self.n_arms))
        except np.linalg.LinAlgError:
            vals, vecs = np.linalg.eigh(cov)
            L = vecs * np.sqrt(np.maximum(vals, 0.0))
        z = self.rng(key).standard_normal((self.mc, self.n_arms))
        return mean + z @ L.T

    # ----------------------------------------------------------------- interface
    def choose(self, context: np.ndarray, key: int) -> Decision:
        winners = np.argmin(self._draws(context, key), axis=1)
        arm = int(winners[0])
        p = float(np.mean(winners == arm))
        return Decision(arm, p, "exploit" if p >= 0.5 else "explore")

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        winners = np.argmin(self._draws(context, key), axis=1)
        return np.bincount(winners, minlength=self.n_arms) / len(winners)

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        y = float(np.log1p(cost))
        x = np.asarray(context, float)[: self.d]
        if not self.have_y0:
            self.y0, self.have_y0 = y, True  # prior mean: the first cost seen
        self.buf = np.vstack([self.buf, np.concatenate([x, [arm, y]])[None, :]])
        if len(self.buf) > self.buffer_size:
            self.buf = self.buf[-self.buffer_size :]
        changed = self.d > 0 and self.scaler.observe(x)
        if changed:
            self._refit()
            return
        r2 = self._rls(x, arm, y, 1.0 / self._sigma2())
        self.resid_ss += max(r2, 0.0)
        self.resid_n += 1

    def _extra_state(self) -> dict[str, Any]:
        return {"S": self.S, "mu": self.mu, "buf": self.buf, "lo": self.scaler.lo,
                "hi": self.scaler.hi, "y0": self.y0, "have_y0": self.have_y0,
                "resid": [self.resid_ss, self.resid_n]}

    def _load_extra_state(self, s: dict[str, Any]) -> None:
        self.S, self.mu, self.buf = s["S"], s["mu"], s["buf"]
        self.scaler.lo, self.scaler.hi = np.asarray(s["lo"]), np.asarray(s["hi"])
        self.y0, self.have_y0 = float(s["y0"]), bool(s["have_y0"])
        self.resid_ss, self.resid_n = (float(v) for v in s["resid"])
