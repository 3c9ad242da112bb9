"""Piecewise-linear (hat) splines on non-uniform knots and the small dense algebra of
``smooth-ts``: difference operators for smoothness priors, interpolation weights, and the
inverse of a symmetric positive definite matrix. Pure functions, no state."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import BSpline
from scipy.linalg import lapack


def divided_diff(knots: np.ndarray, order: int) -> np.ndarray:
    """Differences of ``order`` 1 (slopes) or 2 (slope changes) of a function sampled at
    non-uniform ``knots``, scaled so that equispaced knots give the plain stencils (-1, 1)
    and (1, -2, 1)."""
    n = len(knots)
    if n <= order:
        return np.zeros((0, n))
    h = np.diff(knots)
    hbar = float(np.mean(h))
    D = np.zeros((n - order, n))
    for i in range(n - order):
        if order == 1:
            D[i, i : i + 2] = (-hbar / h[i], hbar / h[i])
        else:
            lo, hi = hbar / h[i], hbar / h[i + 1]
            D[i, i : i + 3] = (lo, -(lo + hi), hi)
    return D


def hat_weights(x: float, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights of the piecewise-linear interpolant at x (clipped to the ends)."""
    if x <= knots[0]:
        return np.array([0]), np.array([1.0])
    if x >= knots[-1]:
        return np.array([len(knots) - 1]), np.array([1.0])
    j = int(np.searchsorted(knots, x, side="right")) - 1
    t = (x - knots[j]) / (knots[j + 1] - knots[j])
    return np.array([j, j + 1]), np.array([1.0 - t, t])


def hat_weights_many(x: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hat_weights` of many points at once, always two (index, weight) pairs per
    point: (n, 2) each. Clipped points put weight 1 on the end knot and 0 on its neighbour,
    which adds exactly nothing."""
    G = len(knots)
    j = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, G - 2)
    t = np.clip((x - knots[j]) / (knots[j + 1] - knots[j]), 0.0, 1.0)
    return np.stack([j, j + 1], axis=1), np.stack([1.0 - t, t], axis=1)


def spd_inverse(M: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix, symmetric (Cholesky: half the
    work of a general inverse); a general inverse if the factorization fails."""
    c, info = lapack.dpotrf(M, lower=False)
    if info == 0:
        inv, info = lapack.dpotri(c, lower=False)
        if info == 0:
            upper = np.triu(inv)
            return upper + np.triu(upper, 1).T
    out = np.linalg.inv(M)
    return (out + out.T) / 2.0


def bspline_basis(n: int, m: int, degree: int = 3) -> np.ndarray:
    """The n x m design matrix of ``m`` clamped B-splines of ``degree`` on uniform knots over
    the points 0..n-1 (rows sum to 1; a row has at most degree + 1 non-zeros). With m >= n
    the identity: every point its own coefficient."""
    if m >= n:
        return np.eye(n)
    if m <= degree:
        raise ValueError(f"a basis of {m} B-splines of degree {degree} needs m > degree")
    inner = np.linspace(0.0, n - 1.0, m - degree + 1)
    t = np.concatenate([[inner[0]] * degree, inner, [inner[-1]] * degree])
    B = BSpline.design_matrix(np.arange(n, dtype=float), t, degree).toarray()
    return np.asarray(B, float)
