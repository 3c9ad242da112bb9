"""From a Gaussian posterior over the arms' log costs to Thompson sampling's choice: Monte
Carlo draws, the probability that each arm is cheapest, rare arms pruned, and the arm a
uniform selects (used by smooth-ts for one decision and for a burst of them alike).

Pure functions of arrays; the draws come from the generators given, one per decision, so a
decision depends only on its own key."""

from __future__ import annotations

import numpy as np

from app.policies.base import Decision


def choice_distributions(
    mean: np.ndarray,
    cov: np.ndarray,
    rngs: list[np.random.Generator],
    mc: int,
    basis: np.ndarray | None,
    min_prob: float,
    tolerance: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """For n decisions, (n, M) posterior means and (n, M, M) covariances of the arm-curve
    coefficients (``basis`` maps them to the arms' log costs; None: one per arm): each
    decision's ``mc`` joint draws from its generator, then a uniform from it. Returns the
    (n, arms) probabilities that each arm is cheapest, those below ``min_prob`` pruned, and
    the (n,) uniforms. With ``tolerance`` > 0 (in log cost) a draw picks, among the arms
    within ``tolerance`` of its cheapest, the one with the lowest posterior mean
    (satisficing Thompson sampling, Russo and Van Roy 2022): an arm is tried only where it
    may beat the known ones by more than the tolerance."""
    n, K = mean.shape
    scale = np.maximum(np.trace(cov, axis1=1, axis2=2) / K, 1e-12)
    jittered = cov + (1e-10 * scale)[:, None, None] * np.eye(K)
    try:
        L = np.linalg.cholesky(jittered)
    except np.linalg.LinAlgError:  # one is not positive definite: each on its own
        L = np.stack([_factor(j, c) for j, c in zip(jittered, cov, strict=True)])
    # the draws map straight to the arms' log costs: one product, not two
    factor = L.transpose(0, 2, 1) if basis is None else L.transpose(0, 2, 1) @ basis.T
    arm_mean = mean if basis is None else mean @ basis.T
    # Antithetic pairs (z, -z) from single precision: half the normals to draw (the burst's
    # main cost) and a lower-variance estimate; choices compare log costs to ~1e-6.
    half = (mc + 1) // 2
    z = np.empty((n, half, K), np.float32)
    u = np.empty(n)
    for i, rng in enumerate(rngs):
        z[i] = rng.standard_normal((half, K), dtype=np.float32)
        u[i] = rng.random()
    spread = z @ factor.astype(np.float32)
    centre = arm_mean.astype(np.float32)[:, None, :]
    draws = np.concatenate([centre + spread, centre - spread], axis=1)[:, :mc]
    arms = draws.shape[2]
    if tolerance > 0.0:
        near = draws <= draws.min(axis=2, keepdims=True) + tolerance
        best = np.argmin(np.where(near, arm_mean[:, None, :], np.inf), axis=2)
    else:
        best = np.argmin(draws, axis=2)
    best = best + arms * np.arange(n)[:, None]  # (n, mc), row-offset
    p = np.bincount(best.reshape(-1), minlength=n * arms).reshape(n, arms) / mc
    p = np.where(p >= min_prob, p, 0.0)
    return p / p.sum(axis=1, keepdims=True), u


def _factor(jittered: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """A square root of ``cov``: Cholesky of the jittered matrix, else from its spectrum."""
    try:
        return np.linalg.cholesky(jittered)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(cov)
        return vecs * np.sqrt(np.maximum(vals, 0.0))  # type: ignore[no-any-return]


def pick(p: np.ndarray, u: float) -> Decision:
    """The arm the uniform ``u`` selects from distribution ``p``, with its propensity."""
    return pick_many(p[None], np.asarray([u]))[0]


def pick_many(P: np.ndarray, U: np.ndarray) -> list[Decision]:
    """:func:`pick` for each row of the (n, arms) distributions ``P`` with its uniform."""
    arms = np.minimum((np.cumsum(P, axis=1) <= U[:, None]).sum(axis=1), P.shape[1] - 1)
    out = []
    for row, arm in zip(P, arms.tolist(), strict=True):
        while row[arm] == 0.0:  # guard against rounding at the top of the cumulative sum
            arm -= 1
        q = float(row[arm])
        out.append(Decision(arm, q, "exploit" if q >= 0.5 else "explore"))
    return out
