"""Counterfactual costs of fixed arms from the logged decisions of one campaign.

Doubly robust (Dudik et al. 2011) with a per-arm ridge model of cost on a quadratic map of
the standardized context: term_t(a) = q_a(x_t) + 1[A_t = a] / p_t * (c_t - q_a(x_t)). Exact
instead when every arm's cost is known (``table`` campaigns). Pure functions of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.offline.ope import MIN_TRUSTED_PROPENSITY
from app.report.data import ReportData

__all__ = ["MIN_TRUSTED_PROPENSITY", "Counterfactual", "counterfactuals", "fit_q"]


@dataclass
class Counterfactual:
    """Per sampled round: the estimated cost of always playing each arm (n x K), its
    per-round standard deviation (K), and whether the values are exact."""

    terms: np.ndarray
    sd: np.ndarray
    exact: bool

    def mean(self) -> np.ndarray:
        return self.terms.mean(axis=0) if len(self.terms) else np.full(self.terms.shape[1], np.nan)

    def ci(self, arm: int) -> tuple[float, float]:
        n = len(self.terms)
        m = float(self.terms[:, arm].mean()) if n else float("nan")
        half = 0.0 if self.exact or n < 2 else 1.96 * float(self.sd[arm]) / np.sqrt(n)
        return m - half, m + half

    def best_fixed(self) -> int:
        return int(np.nanargmin(self.mean()))


def _phi(ctx: np.ndarray) -> np.ndarray:
    if ctx.shape[1] == 0:
        return np.ones((len(ctx), 1))
    mu, sd = ctx.mean(axis=0), ctx.std(axis=0)
    z = (ctx - mu) / np.where(sd > 0, sd, 1.0)
    return np.hstack([np.ones((len(ctx), 1)), z, z**2])


def fit_q(
    ctx: np.ndarray, arm: np.ndarray, cost: np.ndarray, k: int, lam: float = 1.0
) -> np.ndarray:
    """Ridge predictions of every arm's cost at every logged context (n x K); arms never
    played get the overall mean."""
    phi = _phi(ctx)
    q = np.full((len(ctx), k), float(cost.mean()) if len(cost) else 0.0)
    eye = lam * np.eye(phi.shape[1])
    eye[0, 0] = 1e-6  # the intercept is not shrunk towards 0
    for a in range(k):
        rows = arm == a
        if rows.sum() == 0:
            continue
        P, y = phi[rows], cost[rows]
        w = np.linalg.solve(P.T @ P + eye, P.T @ y)
        q[:, a] = phi @ w
    return np.maximum(q, 0.0)


def counterfactuals(data: ReportData) -> Counterfactual:
    r = data.rounds
    k = len(data.arms)
    if data.table_costs is not None and len(data.table_costs) == len(r["cost"]):
        return Counterfactual(data.table_costs, np.zeros(k), exact=True)
    n = len(r["cost"])
    if n == 0:
        return Counterfactual(np.zeros((0, k)), np.zeros(k), exact=False)
    ctx = r["context"]
    q = fit_q(ctx, r["arm"], r["cost"], k)
    played = np.zeros((n, k))
    played[np.arange(n), r["arm"]] = 1.0
    w = played / np.maximum(r["propensity"], 1e-12)[:, None]
    terms = q + w * (r["cost"][:, None] - q)
    sd = terms.std(axis=0, ddof=1) if n > 1 else np.full(k, np.inf)
    return Counterfactual(terms, sd, exact=False)
