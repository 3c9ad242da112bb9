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
changes the model refits from its bounded buffer (the posterior's algebra:
:mod:`app.policies.spline_posterior`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.policies.base import Decision, Policy
from app.policies.features import RangeScaler
from app.policies.smooth_prior import ArmBasis, arm_order, check_model_size
from app.policies.spline_posterior import SplinePosterior
from app.policies.thompson_draws import choice_distributions, pick, pick_many
from app.policies.window import Window, Windowed


class SmoothTSPolicy(SplinePosterior, Windowed, Policy):
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

    # ----------------------------------------------------------------- choice
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
        return pick_many(P, U)

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
