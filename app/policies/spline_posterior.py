"""The Gaussian posterior behind ``smooth-ts``: coefficients over the (context grid x arm
basis), laid out grid point by grid point (M coefficients each); recursive-least-squares
updates with lazily folded rank-one downdates; refits from the bounded buffer when the
learnt context range moves; predictive moments of the M coefficients at a context.

A mixin: :class:`app.policies.smooth_ts.SmoothTSPolicy` sets the attributes declared
below in its constructor. Not thread-safe; predictive methods are pure."""

from __future__ import annotations

import numpy as np

from app.policies.features import RangeScaler
from app.policies.smooth_prior import ArmBasis, prior_precision
from app.policies.splines import hat_weights, hat_weights_many, spd_inverse
from app.policies.window import Window


class SplinePosterior:
    """State and algebra of the posterior (see the module's docstring)."""

    n_arms: int
    d: int  # context features
    G: int  # knots per feature
    J: int  # context grid points, G**d
    P: int  # coefficients, J * M
    grow: bool  # one feature: the grid grows with the data
    ordered: bool
    basis: ArmBasis
    knots: list[np.ndarray]
    hyper: tuple[float, float, float, float, float, float]
    coef_shape: np.ndarray
    prior: np.ndarray
    scaler: RangeScaler
    S: np.ndarray
    mu: np.ndarray
    U: np.ndarray
    r: int
    lazy_rank: int
    _refit_gap: int | None
    _window: Window
    noise0: float
    min_noise: float
    y0: float
    resid_ss: float
    resid_n: float

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
