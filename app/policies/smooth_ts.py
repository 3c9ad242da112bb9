"""``smooth-ts``: our policy. Thompson sampling on a Bayesian P-spline of log-cost over the
joint (context, arm) grid.

What it exploits that the paper's learners do not:

* cost spans orders of magnitude: it models log(1 + cost), where errors are relative;
* cost is smooth in the context: a piecewise-linear (hat) basis on ``knots`` knots per
  feature over the range learnt online, with a second-difference smoothness prior;
* arms are ordered points of a continuum: when the arm positions are 1-D and ordered, a
  second-difference prior across neighbouring arms, so one trial informs its neighbours and
  the curve is extrapolated linearly toward the unexplored side (unimodal curves get
  bisected rather than enumerated);
* with 2-3 features, the arms' profile (each arm less their mean) changes slowly across
  contexts while the level moves freely, so a first visit to a new context range borrows
  its neighbours' profile; with one feature the grid grows with the data instead;
* many ordered arms (more than 24) sample a smooth curve: each context point holds M cubic
  B-spline coefficients of it (``B``: K x M), not K values.

The posterior is Gaussian: mean ``mu`` and covariance ``S`` over the G**d x M coefficients,
updated by recursive least squares, P = G**d M (M = K without a basis). The rank-one
downdates of ``S`` are kept as ``lazy_rank`` pending columns ``U`` (``S_true = S - U U'``)
and folded in one matrix product when they fill up: O(P r) per result instead of O(P^2),
the same posterior. A choice samples the M coefficients at the context jointly (an M x M
covariance), maps them to the K arm values and takes the cheapest; the propensity is the
Monte Carlo frequency of that arm under the same posterior. When the learnt context range
changes the model refits from its bounded buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.policies.base import Decision, Policy
from app.policies.features import RangeScaler
from app.policies.smooth_prior import ArmBasis, arm_order, check_model_size, prior_precision
from app.policies.splines import hat_weights, hat_weights_many, spd_inverse
from app.policies.thompson_draws import choice_distributions, pick
from app.policies.window import Window, Windowed


class SmoothTSPolicy(Windowed, Policy):
    """Thompson sampling on a Bayesian P-spline of log-cost over the (context, arm) grid.

    Not thread-safe; ``choose`` is pure; update O(P^2); state = (mu, S, buffer, range)."""

    name = "smooth-ts"
    version = "3"

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        *,
        knots: int | None = None,
        arm_smooth: float = 4.0,
        arm_slope: float = 0.04,
        bowl: float = 0.5,
        trend: float = 0.2,
        context_smooth: float = 4.0,
        ridge: float = 1e-4,
        explore: float | None = None,
        noise: float = 0.1,
        min_noise: float = 0.02,
        mc: int = 256,
        min_prob: float = 0.02,
        buffer: int = 20_000,
        ordered_arms: bool | None = None,
        lazy_rank: int = 32,
        shape_slope: float | None = None,
        refit_gap: int | None = None,
        arm_basis: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(n_arms, n_features, **kw)
        d = n_features
        # One feature, knots not given: the grid grows with the data (10 knots, up to 18 from
        # ~600 results): coarse while little is known (fast first visits), fine later, where
        # the optimum moves fast with the context. Refits resize it.
        self.grow = d == 1 and knots is None
        if knots is None:
            knots = {0: 1, 1: 10, 2: 6}.get(d, 4)
        if d > 0 and knots < 2:
            raise ValueError("policy_config.knots must be >= 2 with context features")
        if d > 3:
            raise ValueError("smooth-ts supports up to 3 context features; use lin-ts")
        self.d = d
        self.ordered, rank = arm_order(self.arm_positions, self.arms_given, ordered_arms)
        if arm_basis is not None and not 1 <= int(arm_basis) <= n_arms:
            raise ValueError(f"policy_config.arm_basis={arm_basis} must be in 1..{n_arms}")
        self.basis = ArmBasis.make(n_arms, self.ordered, arm_basis, rank)
        check_model_size(1 if d == 0 else int(knots), d, self.basis.M)
        self._set_grid(1 if d == 0 else int(knots))
        if explore is None:
            # One value per arm, the posterior's rough arm-to-arm components spread the
            # draws' argmin over neighbouring arms; a spline basis has none, and without a
            # wider draw the choice can lock onto one arm in a new context range (drift2d /
            # heat-pcg figures in the README).
            explore = 0.8 if self.basis.identity else 1.0
        self.explore = float(explore)
        self.noise0 = float(noise)
        self.min_noise = float(min_noise)
        if not 1 <= int(mc) <= 4096:
            raise ValueError(f"policy_config.mc={mc} must be in 1..4096")
        self.mc = int(mc)
        if not 0.0 <= float(min_prob) < 1.0 / n_arms + 1e-12 and n_arms > 1:
            raise ValueError(f"policy_config.min_prob={min_prob} must be in [0, 1/K]")
        self.min_prob = float(min_prob)
        if not 1 <= int(buffer) <= 1_000_000:
            raise ValueError(f"policy_config.buffer={buffer} must be in 1..1000000")
        self._window = Window(d + 2, int(buffer))  # rows: context..., arm, y (``buf``)
        if int(lazy_rank) < 0:
            raise ValueError(f"policy_config.lazy_rank={lazy_rank} must be >= 0 (0: eager)")
        self.lazy_rank = int(lazy_rank)
        if shape_slope is None:
            # With one feature the grid's 10-18 knots each see plenty of data and the optimum
            # moves fast with the context (the profile prior then biases); with 2-3 features
            # most of the 36-64 cells are new when the context drifts, and borrowing the
            # neighbours' profile is what makes a first visit cheap.
            shape_slope = 2.0 if d >= 2 else 0.0
        self.hyper = (
            float(ridge),
            float(arm_smooth),
            float(context_smooth),
            float(arm_slope),
            float(trend),
            float(shape_slope),
        )
        # Prior mean over the grid: a shallow convex bowl across ordered arms (an interior
        # optimum is likelier than an end), ``bowl`` log-units higher at the ends.
        arm_shape = np.zeros(n_arms)
        if self.ordered and n_arms >= 3:
            u = np.linspace(-1.0, 1.0, n_arms)
            if rank is not None:
                u = u[rank]
            arm_shape = float(bowl) * u**2
        self.coef_shape = np.linalg.lstsq(self.basis.B, arm_shape, rcond=None)[0]
        self.knots = [np.linspace(-1.0, 1.0, self.G) for _ in range(d)]
        self.next_refit = 32
        if refit_gap is not None and int(refit_gap) < 1:
            raise ValueError(f"policy_config.refit_gap={refit_gap} must be >= 1")
        self._refit_gap = None if refit_gap is None else int(refit_gap)
        self.since_refit = 0
        self.stale = False  # the context range grew since the last refit
        self.prior = self._prior_precision()
        self.scaler = RangeScaler(max(d, 1))
        self._reset_posterior()
        self.y0 = 0.0
        self.have_y0 = False
        self.resid_ss = 0.0
        self.resid_n = 0.0

    # ----------------------------------------------------------------- model
    @property
    def M(self) -> int:
        """Coefficients per context point (the arm basis's; K without one)."""
        return self.basis.M

    @property
    def mu0(self) -> np.ndarray:
        """The prior mean over the grid: the arm shape's coefficients at every point."""
        return np.tile(self.coef_shape, self.J)

    def _set_grid(self, G: int) -> None:
        self.G = G
        self.J = G**self.d  # context grid points
        self.P = self.J * self.M

    @property
    def refit_gap(self) -> int:
        """Results between refits after the context range grew: 1 while the grid holds at
        most 1024 (context point, arm) values, else one per 64 of them (29 with 2 features
        and 50 arms). Besides bounding the cost, the gap lets the result updates in between
        record a fast drift's surprises in the noise estimate; refitting at every step of
        such a drift rebuilds the posterior on a noise level learnt before it, and with
        many arms on a spline basis the choice then locks onto one arm (the README's
        heat-pcg figures)."""
        if self._refit_gap is not None:
            return self._refit_gap
        values = self.J * self.n_arms
        return 1 if values <= 1024 else -(-values // 64)

    def _grid_for(self, n: int) -> int:
        """Knots of a growing 1-feature grid holding ``n`` results."""
        return int(np.clip(round(2.2 * n ** (1.0 / 3.0)), 10, 18))

    def _resize(self, G: int) -> None:
        """A grid of G knots (a refit follows: it rebuilds the posterior from the buffer)."""
        self._set_grid(G)
        lo, hi = float(self.knots[0][0]), float(self.knots[0][-1])
        self.knots = [np.linspace(lo, hi, G)]

    def _prior_precision(self) -> np.ndarray:
        return prior_precision(self.knots, self.basis, self.ordered, *self.hyper)

    def _reset_posterior(self) -> None:
        self.S = spd_inverse(self.prior)
        self.mu = self.mu0.copy()
        self._clear_pending()

    def _clear_pending(self) -> None:
        self.U = np.empty((self.P, self.lazy_rank))
        self.r = 0

    def _fold(self) -> None:
        """Apply the pending downdates to ``S`` (one P x r x P product)."""
        if self.r:
            Ur = self.U[:, : self.r]
            self.S -= Ur @ Ur.T
            self.r = 0

    @property
    def buf(self) -> np.ndarray:
        """The last ``buffer`` observations, oldest first (a view: do not keep it)."""
        return self._window.rows

    @buf.setter
    def buf(self, rows: np.ndarray) -> None:
        self._window.load(rows)

    def _basis(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Active context-grid indices and weights at x."""
        if self.d == 0:
            return np.zeros(1, dtype=np.int64), np.ones(1)
        idx, w = hat_weights(float(x[0]), self.knots[0])
        for j in range(1, self.d):
            ij, wj = hat_weights(float(x[j]), self.knots[j])
            idx = (idx[:, None] * self.G + ij[None, :]).reshape(-1)
            w = (w[:, None] * wj[None, :]).reshape(-1)
        return idx, w

    def _basis_many(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_basis` of many contexts (rows of ``X``): (n, 2^d) indices and weights."""
        n = X.shape[0]
        if self.d == 0:
            return np.zeros((n, 1), dtype=np.int64), np.ones((n, 1))
        idx, w = hat_weights_many(X[:, 0], self.knots[0])
        for j in range(1, self.d):
            ij, wj = hat_weights_many(X[:, j], self.knots[j])
            idx = (idx[:, :, None] * self.G + ij[:, None, :]).reshape(n, -1)
            w = (w[:, :, None] * wj[:, None, :]).reshape(n, -1)
        return idx, w

    def _sigma2(self) -> float:
        if self.resid_n < 5:
            return self.noise0**2
        return max(self.resid_ss / self.resid_n, self.min_noise**2)

    def _surprise(self, x: np.ndarray, arm: int, y: float) -> tuple[float, float, np.ndarray]:
        """The observation's predictive residual, its model variance phi' S phi and S phi."""
        gi, gw = self._basis(x)
        idx = (gi[:, None] * self.M + self.basis.idx[arm][None, :]).reshape(-1)
        gw = (gw[:, None] * self.basis.w[arm][None, :]).reshape(-1)
        Sphi = gw @ self.S[idx]  # rows (S is symmetric): contiguous, unlike columns
        if self.r:
            Sphi -= self.U[:, : self.r] @ (self.U[idx, : self.r].T @ gw)
        return y - self.y0 - float(gw @ self.mu[idx]), float(gw @ Sphi[idx]), Sphi

    def _rls(self, x: np.ndarray, arm: int, y: float, w: float) -> float:
        """One recursive-least-squares step; returns the noise part of the squared
        predictive error."""
        r, phiSphi, Sphi = self._surprise(x, arm, y)
        c = 1.0 / w + phiSphi
        self.mu += Sphi * (r / c)
        if self.lazy_rank:
            self.U[:, self.r] = Sphi / np.sqrt(c)
            self.r += 1
            if self.r == self.lazy_rank:
                self._fold()
        else:
            self.S -= np.outer(Sphi / c, Sphi)
        return r * r - phiSphi  # noise part of the squared predictive error

    def _place_knots(self) -> None:
        """Knots at quantiles of the contexts seen (resolution where the data is), spanning
        the learnt range, with a minimum spacing so none collapse."""
        for j in range(self.d):
            lo, hi = float(self.scaler.lo[j]), float(self.scaler.hi[j])
            width = max(hi - lo, 1e-9)
            q = (
                np.quantile(self.buf[:, j], np.linspace(0.0, 1.0, self.G))
                if len(self.buf)
                else np.linspace(lo, hi, self.G)
            )
            # Blend quantile and uniform knots: adaptive, but never blind to the tails.
            k = 0.5 * q + 0.5 * np.linspace(lo, hi, self.G)
            k[0], k[-1] = lo, hi
            k = np.maximum.accumulate(k)
            min_gap = 0.2 * width / (self.G - 1)
            for i in range(1, self.G):
                k[i] = max(k[i], k[i - 1] + min_gap)
            self.knots[j] = k * (width / (k[-1] - k[0])) + (lo - k[0] * width / (k[-1] - k[0]))
        self.prior = self._prior_precision()

    def _refit(self) -> None:
        if self.grow and self._grid_for(len(self.buf)) > self.G:
            self._resize(self._grid_for(len(self.buf)))
        if self.d:
            self._place_knots()
        self._clear_pending()  # S and mu are rebuilt below from the prior and the buffer
        w = 1.0 / self._sigma2()
        Lam = self.prior.copy()
        h = np.zeros(self.P)
        buf = self.buf
        if len(buf):
            gi, gw = self._basis_many(buf[:, : self.d])
            arms = buf[:, self.d].astype(np.int64)
            n = len(buf)
            ai, aw = self.basis.idx[arms], self.basis.w[arms]  # (n, s)
            idx = (gi[:, :, None] * self.M + ai[:, None, :]).reshape(n, -1)  # (n, m s)
            gw = (gw[:, :, None] * aw[:, None, :]).reshape(n, -1)
            # every row's outer product, scattered into Lam at once (duplicates add up)
            flat = (idx[:, :, None] * self.P + idx[:, None, :]).reshape(-1)
            vals = (w * gw[:, :, None] * gw[:, None, :]).reshape(-1)
            Lam += np.bincount(flat, vals, minlength=self.P * self.P).reshape(self.P, self.P)
            resid = (buf[:, self.d + 1] - self.y0)[:, None]
            h += np.bincount(idx.reshape(-1), (w * gw * resid).reshape(-1), minlength=self.P)
        self.S = spd_inverse(Lam)
        self.mu = self.S @ (h + self.prior @ self.mu0)

    def _predictive(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and covariance of the M arm-curve coefficients at x (the arms'
        log costs are ``B`` times them). The posterior is laid out grid point by grid point,
        M coefficients each: the active points' blocks of ``S`` are contiguous with one
        context feature (a view, no gather). The covariance is the ``w``-weighted sum of the
        m x m blocks of M x M (O(m^2 M^2), not the O(m^2 M^3) of forming ``W' S_sub W``),
        less the pending downdates projected the same way."""
        gi, gw = self._basis(x)
        K, m, J = self.M, len(gi), self.J
        if m == 1 or (m == 2 and gi[1] == gi[0] + 1):
            lo = int(gi[0]) * K
            blocks = self.S[lo : lo + m * K, lo : lo + m * K].reshape(m, K, m, K)
            cov = np.tensordot(np.tensordot(gw, blocks, axes=(0, 0)), gw, axes=(1, 0))
        else:
            # the m x m blocks of K x K (rows of K contiguous): a fraction of the time of
            # gathering the (m K)^2 entries one by one
            blocks = self.S.reshape(J, K, J, K)[gi[:, None], :, gi[None, :], :]
            cov = np.tensordot(np.tensordot(gw, blocks, axes=(0, 0)), gw, axes=(0, 0))
        mean = gw @ self.mu.reshape(J, K)[gi] + self.y0
        if self.r:
            V = np.tensordot(gw, self.U.reshape(J, K, -1)[gi, :, : self.r], axes=(0, 0))
            cov = cov - V @ V.T
        return mean, (cov + cov.T) / 2.0

    def _predictive_many(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_predictive` at each row of ``X``: (n, M) means, (n, M, M) covariances."""
        gi, gw = self._basis_many(np.asarray(X, float).reshape(len(X), -1)[:, : self.d])
        K, J = self.M, self.J
        S4 = self.S.reshape(J, K, J, K)
        # (n, m, m, K, K): the advanced indices around the slice come first
        blocks = S4[gi[:, :, None], :, gi[:, None, :], :]
        cov = np.einsum("na,nabij,nb->nij", gw, blocks, gw)
        mean = np.einsum("na,nak->nk", gw, self.mu.reshape(J, K)[gi]) + self.y0
        if self.r:
            V = np.einsum("na,nakr->nkr", gw, self.U.reshape(J, K, -1)[gi, :, : self.r])
            cov = cov - V @ V.transpose(0, 2, 1)
        return mean, (cov + cov.transpose(0, 2, 1)) / 2.0

    def _distributions(self, X: np.ndarray, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_distribution` at each row of ``X`` with its key, vectorized over the
        rows (each from its key's generator, as one call each would draw): (n, arms)
        distributions and (n,) uniforms."""
        mean, cov = self._predictive_many(X)
        return self._choices(mean, cov, keys)

    def _choices(
        self, mean: np.ndarray, cov: np.ndarray, keys: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        return choice_distributions(
            mean,
            cov * self.explore**2,
            [self.rng(int(k)) for k in keys],
            self.mc,
            None if self.basis.plain else self.basis.B,
            self.min_prob,
        )

    # ----------------------------------------------------------------- interface
    def _distribution(self, context: np.ndarray, key: int) -> tuple[np.ndarray, float]:
        """Posterior probability that each arm is cheapest (Monte Carlo), with arms below
        ``min_prob`` pruned: a one-in-hundreds draw at an expensive context costs more than
        the information it buys. Returns (distribution, uniform for the choice)."""
        mean, cov = self._predictive(np.asarray(context, float))
        p, u = self._choices(mean[None], cov[None], [key])
        return p[0], float(u[0])

    def choose(self, context: np.ndarray, key: int) -> Decision:
        return pick(*self._distribution(context, key))

    def choose_many(self, contexts: np.ndarray, keys: Sequence[int]) -> list[Decision]:
        if len(contexts) < 2:
            return super().choose_many(contexts, keys)
        P, U = self._distributions(np.asarray(contexts, float), keys)
        return [pick(p, float(u)) for p, u in zip(P, U, strict=True)]

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        return self._distribution(context, key)[0]

    def best_arm(self, context: np.ndarray) -> int:
        return int(np.argmin(self.basis.B @ self._predictive(np.asarray(context, float))[0]))

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        y = float(np.log1p(cost))
        x = np.asarray(context, float)[: self.d]
        if not self.have_y0:
            self.y0, self.have_y0 = y, True  # prior mean: the first cost seen
        self._window.append(np.concatenate([x, [arm, y]]))
        self.stale = (self.d > 0 and self.scaler.observe(x)) or self.stale
        self.since_refit += 1
        n = len(self.buf)
        # After the range grew, at most one refit per ``refit_gap`` results
        # (meanwhile contexts past the old range take its edge, whose arm profile the shape
        # prior carries); otherwise at doubling buffer sizes, O(log T) in all.
        if (self.stale and self.since_refit >= self.refit_gap) or (
            self.d > 0 and n >= self.next_refit
        ):
            if n >= self.next_refit:
                self.next_refit *= 2
            self._refit()
            self.stale, self.since_refit = False, 0
            return
        r2 = self._rls(x, arm, y, 1.0 / self._sigma2())
        self.resid_ss += max(r2, 0.0)
        self.resid_n += 1

    def _extra_state(self) -> dict[str, Any]:
        self._fold()  # the state holds S itself (same posterior)
        return {
            "S": self.S,
            "mu": self.mu,
            "buf": self.buf,
            "lo": self.scaler.lo,
            "knots": list(self.knots),
            "next_refit": self.next_refit,
            "since_refit": self.since_refit,
            "stale": self.stale,
            "hi": self.scaler.hi,
            "y0": self.y0,
            "have_y0": self.have_y0,
            "resid": [self.resid_ss, self.resid_n],
        }

    def _load_extra_state(self, s: dict[str, Any]) -> None:
        self.S, self.mu, self.buf = s["S"], s["mu"], np.asarray(s["buf"], float)
        self.knots = [np.asarray(k, float) for k in s["knots"]]
        if self.d and len(self.knots[0]) != self.G:  # a grown grid
            self._set_grid(len(self.knots[0]))
        self.next_refit = int(s["next_refit"])
        self.since_refit, self.stale = int(s["since_refit"]), bool(s["stale"])
        self.prior = self._prior_precision()
        self.scaler.lo, self.scaler.hi = np.asarray(s["lo"]), np.asarray(s["hi"])
        self.y0, self.have_y0 = float(s["y0"]), bool(s["have_y0"])
        self.resid_ss, self.resid_n = (float(v) for v in s["resid"])
        self._clear_pending()
