"""Counterfactual costs of fixed arms from the logged decisions of one campaign.

Doubly robust (Dudik et al. 2011) with a per-arm ridge model of cost on a quadratic map of
the standardized context: term_t(a) = q_a(x_t) + 1[A_t = a] / p_t * (c_t - q_a(x_t)). The
95% intervals are a bootstrap over the logged rounds with the model refitted in every
replicate, so the model's own error is part of them. They are studentized (bootstrap-t:
the quantiles of (replicate mean - mean) / replicate standard error, scaled by the
standard error): a mean resting on a few weighted plays of a skewed cost is skewed itself,
which plain percentile intervals miss (they sit too low when the sample missed the tail).
An arm logged fewer than :data:`MIN_PLAYS` times gets no estimate ("not enough data"): with
so few points the model is a guess and no resampling can say how wrong. Exact instead when
every arm's cost is known (``table`` campaigns). Pure functions of arrays; deterministic (a
fixed resampling seed per arm); intervals are computed per arm on first use and kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.offline.ope import MIN_TRUSTED_PROPENSITY
from app.report.data import ReportData

__all__ = [
    "MIN_PLAYS",
    "Logged",
    "MIN_TRUSTED_PROPENSITY",
    "Counterfactual",
    "counterfactuals",
    "estimate",
    "fit_q",
]

#: logged plays an arm needs before its counterfactual mean is estimated
MIN_PLAYS = 5
#: bootstrap replicates behind each interval
REPLICATES = 400


@dataclass
class Logged:
    """What the estimates come from: the model's features of each logged round (n x p),
    the arm played, its propensity and its cost."""

    phi: np.ndarray
    arm: np.ndarray
    propensity: np.ndarray
    cost: np.ndarray


@dataclass
class Counterfactual:
    """Per sampled round: the estimated cost of always playing each arm (n x K), its
    per-round standard deviation (K), how often each arm was logged (K), and whether the
    values are exact. Not thread-safe (intervals are filled in on first use)."""

    terms: np.ndarray
    sd: np.ndarray
    exact: bool
    log: Logged | None = None
    plays: np.ndarray | None = None
    _ci: dict[int, tuple[float, float]] = field(default_factory=dict)

    def mean(self) -> np.ndarray:
        return self.terms.mean(axis=0) if len(self.terms) else np.full(self.terms.shape[1], np.nan)

    def enough(self, arm: int) -> bool:
        """Whether the data supports an estimate of ``arm``'s mean."""
        if self.exact:
            return len(self.terms) > 0
        return self.plays is not None and int(self.plays[arm]) >= MIN_PLAYS

    def ci(self, arm: int) -> tuple[float, float]:
        """The 95% interval of ``arm``'s mean cost (NaN when there is not enough data)."""
        if self.exact:
            m = float(self.terms[:, arm].mean()) if len(self.terms) else float("nan")
            return m, m
        if self.log is None or not self.enough(arm):
            return float("nan"), float("nan")
        if arm not in self._ci:
            means, ses = bootstrap_means(self.log, arm, REPLICATES, seed=arm)
            n = len(self.terms)
            mean = float(self.terms[:, arm].mean())
            se = float(self.terms[:, arm].std(ddof=1)) / np.sqrt(n)
            t = (means - mean) / np.maximum(ses, 1e-300)
            t_lo, t_hi = np.percentile(t, [2.5, 97.5])
            self._ci[arm] = (mean - float(t_hi) * se, mean - float(t_lo) * se)
        return self._ci[arm]

    def best_fixed(self) -> int | None:
        """The arm with the lowest estimated mean among those the data supports (None when
        none is)."""
        means = self.mean()
        ok = [a for a in range(len(means)) if self.enough(a) and np.isfinite(means[a])]
        return min(ok, key=lambda a: means[a]) if ok else None


def _phi(ctx: np.ndarray) -> np.ndarray:
    if ctx.shape[1] == 0:
        return np.ones((len(ctx), 1))
    mu, sd = ctx.mean(axis=0), ctx.std(axis=0)
    z = (ctx - mu) / np.where(sd > 0, sd, 1.0)
    return np.hstack([np.ones((len(ctx), 1)), z, z**2])


def _ridge(P: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    eye = lam * np.eye(P.shape[1])
    eye[0, 0] = 1e-6  # the intercept is not shrunk towards 0
    return np.linalg.solve(P.T @ P + eye, P.T @ y)


def fit_q(
    ctx: np.ndarray, arm: np.ndarray, cost: np.ndarray, k: int, lam: float = 1.0
) -> np.ndarray:
    """Ridge predictions of every arm's cost at every logged context (n x K); arms never
    played get the overall mean."""
    return _q(_phi(ctx), arm, cost, k, lam)


def _q(phi: np.ndarray, arm: np.ndarray, cost: np.ndarray, k: int, lam: float) -> np.ndarray:
    q = np.full((len(phi), k), float(cost.mean()) if len(cost) else 0.0)
    for a in range(k):
        rows = arm == a
        if rows.any():
            q[:, a] = phi @ _ridge(phi[rows], cost[rows], lam)
    return np.maximum(q, 0.0)


def bootstrap_means(
    log: Logged, a: int, replicates: int, seed: int, lam: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Arm ``a``'s doubly robust mean and its standard error in ``replicates`` bootstrap
    resamples of the rounds (multinomial counts as weights), its model refitted in each:
    all replicates' ridge fits at once."""
    n = len(log.cost)
    W = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=replicates)
    W = W.astype(float)
    rows = log.arm == a
    P, y, Wr = log.phi[rows], log.cost[rows], W[:, rows]
    eye = lam * np.eye(P.shape[1])
    eye[0, 0] = 1e-6
    G = np.einsum("bn,ni,nj->bij", Wr, P, P) + eye
    h = np.einsum("bn,ni,n->bi", Wr, P, y)
    Q = np.maximum(np.linalg.solve(G, h[..., None])[..., 0] @ log.phi.T, 0.0)  # (B, n)
    # a replicate without a play of ``a``: its model is the replicate's mean cost (fit_q's)
    none = Wr.sum(axis=1) == 0
    if none.any():
        Q[none] = ((W[none] @ log.cost) / n)[:, None]
    played = rows / np.maximum(log.propensity, 1e-12)
    terms = Q + played[None, :] * (log.cost[None, :] - Q)
    means = (W * terms).sum(axis=1) / n
    var = (W * (terms - means[:, None]) ** 2).sum(axis=1) / max(n - 1, 1)
    return means, np.sqrt(var / n)


def estimate(
    ctx: np.ndarray, arm: np.ndarray, propensity: np.ndarray, cost: np.ndarray, k: int
) -> Counterfactual:
    """DR estimates of every arm's mean cost over the logged rounds; intervals (a
    bootstrap over the rounds, the model refitted in each replicate) on demand."""
    n = len(cost)
    if n == 0:
        return Counterfactual(np.zeros((0, k)), np.zeros(k), False, plays=np.zeros(k, int))
    phi = _phi(ctx)
    q = _q(phi, arm, cost, k, 1.0)
    played = np.zeros((n, k))
    played[np.arange(n), arm] = 1.0
    w = played / np.maximum(propensity, 1e-12)[:, None]
    terms = q + w * (cost[:, None] - q)
    sd = terms.std(axis=0, ddof=1) if n > 1 else np.full(k, np.inf)
    log = Logged(phi, arm, propensity, cost)
    return Counterfactual(terms, sd, False, log, np.bincount(arm, minlength=k))


def counterfactuals(data: ReportData) -> Counterfactual:
    r = data.rounds
    k = len(data.arms)
    if data.table_costs is not None and len(data.table_costs) == len(r["cost"]):
        return Counterfactual(data.table_costs, np.zeros(k), exact=True)
    return estimate(r["context"], r["arm"].astype(np.int64), r["propensity"], r["cost"], k)
