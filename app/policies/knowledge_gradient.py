"""The online knowledge gradient in cost space, for a Gaussian model of log costs (Frazier,
Powell and Dayanik 2009, correlated beliefs; Ryzhov, Powell and Frazier 2012, online
learning): what one more result of each arm is worth to the decisions that follow, and what
trying an arm costs when a budget stops it.

Pure functions of arrays. Log costs are Gaussian: the posterior mean of an arm's cost is
``exp(mu + v / 2)`` (``v`` the variance of the mean), and one result of arm ``a`` moves
every arm's mean by ``sigma_a Z`` (Z standard normal, ``sigma_a`` the covariance with ``a``
over ``a``'s predictive sd) and shrinks its variance by ``sigma_a^2``: the expected cost of
each arm is unchanged by learning (a martingale), the expected cost of the cheapest arm
falls, and the fall is the value of the result. Expectations over Z use Gauss-Hermite
quadrature (``NODES`` points: the minimum has kinks, so the value is within a few percent,
not exact; a decision compares values that differ by far more)."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

NODES = 24
_Z, _W = np.polynomial.hermite_e.hermegauss(NODES)
_W = _W / _W.sum()


def expected_costs(mu: np.ndarray, var: np.ndarray, ref: float) -> np.ndarray:
    """Posterior mean costs ``exp(mu + var / 2)``, in units of ``exp(ref)`` (overflow-safe)."""
    return np.exp(np.minimum(mu + var / 2.0 - ref, 700.0))


def knowledge_gradient(
    mu_f: np.ndarray,
    var_f: np.ndarray,
    cross: np.ndarray,
    var_x: np.ndarray,
    noise: float,
    ref: float,
) -> np.ndarray:
    """(K,) for each arm ``a`` tried at the current context: the expected fall of the
    cheapest expected cost, averaged over ``m`` future contexts, in units of ``exp(ref)``.

    ``mu_f``, ``var_f``: (m, K) posterior means and variances of the arms' mean log costs at
    the future contexts; ``cross``: (K, m, K) the covariance of arm ``a``'s mean at the
    current context with arm ``j``'s at future context ``i`` (``cross[a, i, j]``); ``var_x``:
    (K,) the variances at the current context; ``noise``: the variance of one result's log
    cost about its mean."""
    sig = cross / np.sqrt(var_x + noise)[:, None, None]  # (K, m, K)
    base = mu_f + var_f / 2.0 - ref  # (m, K)
    now = expected_costs(mu_f, var_f, ref).min(axis=1)  # (m,)
    moved = base[None, :, :, None] + sig[..., None] * _Z - 0.5 * sig[..., None] ** 2
    after = np.exp(np.minimum(moved.min(axis=2), 700.0)) @ _W  # (K, m)
    return np.maximum(now[None, :] - after, 0.0).mean(axis=1)


def stopped_costs(
    mu: np.ndarray, var: np.ndarray, noise: float, fallback: int, factor: float, ref: float
) -> np.ndarray:
    """(K,) each arm's expected cost for one trial under a budget (units of ``exp(ref)``):
    the arm is stopped at ``factor`` x the fallback's estimated cost (``exp(mu[fallback])``,
    as :class:`app.policies.fallback.FallbackBudget` sets it) and the fallback then solves,
    both paid. A trial's log cost is normal with mean ``mu`` and variance ``var + noise``:
    ``E[c; c <= b] + P(c > b) (b + E[c_fallback])``, lognormal partial moments."""
    s2 = var + noise
    s = np.sqrt(s2)
    lb = np.log(factor) + mu[fallback]
    full = expected_costs(mu, s2, ref)
    below = full * ndtr((lb - mu - s2) / s)
    over = ndtr((mu - lb) / s)
    rescue = np.exp(min(lb - ref, 700.0)) + full[fallback]
    paid = below + over * rescue
    paid[fallback] = full[fallback]
    return paid  # type: ignore[no-any-return]
