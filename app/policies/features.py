"""Feature maps over contexts whose range is learnt online.

A :class:`RangeScaler` maps raw contexts to [-1, 1] per feature using the range seen so far,
widened by a margin so that it changes rarely; models that depend on it refit from their
bounded buffer when it changes (see :mod:`app.policies.ridge`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np


class RangeScaler:
    """Learns per-feature [lo, hi]; ``observe`` returns True when the range changed."""

    def __init__(self, n_features: int, margin: float = 0.1) -> None:
        self.lo = np.full(n_features, np.inf)
        self.hi = np.full(n_features, -np.inf)
        self.margin = margin

    @property
    def ready(self) -> bool:
        return bool(np.all(np.isfinite(self.lo)))

    def observe(self, x: np.ndarray) -> bool:
        if not self.ready:
            self.lo = x - 1e-9
            self.hi = x + 1e-9
            return True
        if np.all(x >= self.lo) and np.all(x <= self.hi):
            return False
        width = np.maximum(self.hi - self.lo, 1e-9)
        # Widen past the new point so a stream of slowly growing extremes refits rarely.
        self.lo = np.where(x < self.lo, x - self.margin * width, self.lo)
        self.hi = np.where(x > self.hi, x + self.margin * width, self.hi)
        return True

    def scale(self, x: np.ndarray) -> np.ndarray:
        """To [-1, 1]; outside the seen range values are clipped (no wild extrapolation)."""
        if not self.ready:
            return np.zeros_like(x, dtype=float)
        mid = (self.hi + self.lo) / 2.0
        half = np.maximum((self.hi - self.lo) / 2.0, 1e-12)
        return np.clip((x - mid) / half, -1.0, 1.0)


def chebyshev(z: np.ndarray, degree: int) -> np.ndarray:
    """Tensor Chebyshev features of total degree <= ``degree`` (z in [-1, 1]^d); at most
    4096 of them (ValueError beyond: their count grows as C(d + degree, d))."""
    d = z.shape[-1]
    if math.comb(d + degree, d) > 4096:
        raise ValueError(
            f"policy_config.degree={degree} with {d} features gives "
            f"{math.comb(d + degree, d)} Chebyshev features, over 4096"
        )
    T = [np.ones_like(z), z]
    for _ in range(2, degree + 1):
        T.append(2 * z * T[-1] - T[-2])
    per = np.stack(T[: degree + 1], axis=-1)  # (..., d, degree+1)
    cols = []
    for combo in _multi_indices(d, degree):
        col = np.ones(z.shape[:-1])
        for j, k in enumerate(combo):
            col = col * per[..., j, k]
        cols.append(col)
    return np.stack(cols, axis=-1)


def _multi_indices(d: int, degree: int) -> list[tuple[int, ...]]:
    if d <= 2:
        return [c for c in itertools.product(range(degree + 1), repeat=d) if sum(c) <= degree]
    # Many features: additive (no cross terms) keeps the basis small.
    out: list[tuple[int, ...]] = [tuple([0] * d)]
    for j in range(d):
        for k in range(1, degree + 1):
            c = [0] * d
            c[j] = k
            out.append(tuple(c))
    return out


def n_chebyshev(d: int, degree: int) -> int:
    return len(_multi_indices(d, degree))


def hat_basis(z: np.ndarray, knots: int) -> np.ndarray:
    """Piecewise-linear B-spline (hat) basis on ``knots`` equispaced knots over [-1, 1]^d,
    tensor product over features (knots**d columns)."""
    grid = np.linspace(-1.0, 1.0, knots)
    h = 2.0 / (knots - 1)
    per = np.maximum(0.0, 1.0 - np.abs(z[..., :, None] - grid) / h)  # (..., d, knots)
    out = per[..., 0, :]
    for j in range(1, z.shape[-1]):
        out = (out[..., :, None] * per[..., j, None, :]).reshape(*z.shape[:-1], -1)
    return out
