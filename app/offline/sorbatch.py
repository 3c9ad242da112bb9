"""SOR iteration counts for many (shift, omega, rhs) at once, vectorized over the batch.

Same method as the ``sor`` trial kind (natural ordering, M = D/omega + L, x0 = 0, stop at
relative residual < tol), for building full-information cost tables quickly: one sweep updates
row i of every system in the batch together, so Python overhead is per row, not per system.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def sor_iterations(
    A: sp.csr_matrix,
    shifts: np.ndarray,
    omegas: np.ndarray,
    rhs: np.ndarray,
    tol: float = 1e-8,
    max_iters: int = 10_000,
    A1: sp.csr_matrix | None = None,
    scales: np.ndarray | None = None,
) -> np.ndarray:
    """Iterations for each system ``(A + shifts[j] I) x = rhs[:, j]`` with ``omegas[j]``.

    ``shifts``, ``omegas``: (B,); ``rhs``: (n, B). With ``A1`` and ``scales`` the systems are
    ``A + shifts[j] I + scales[j] A1`` (e.g. an anisotropy). Returns (B,) ints; ``max_iters``
    where SOR did not converge in time.
    """
    A = sp.csr_matrix(A)
    if A1 is None or scales is None:
        # The one-matrix case is the two-matrix one with nothing in the second matrix.
        A1, scales = sp.csr_matrix(A.shape), np.zeros(len(shifts))
    return _sor_iterations_two(A, A1, shifts, scales, omegas, rhs, tol, max_iters)


def _sor_iterations_two(
    A0: sp.csr_matrix,
    A1: sp.csr_matrix,
    shifts: np.ndarray,
    scales: np.ndarray,
    omegas: np.ndarray,
    rhs: np.ndarray,
    tol: float,
    max_iters: int,
) -> np.ndarray:
    A0, A1 = sp.csr_matrix(A0), sp.csr_matrix(A1)
    n = A0.shape[0]
    d0, d1 = A0.diagonal(), A1.diagonal()
    o0 = sp.csr_matrix(A0 - sp.diags(d0))
    o1 = sp.csr_matrix(A1 - sp.diags(d1))
    o0.eliminate_zeros()
    o1.eliminate_zeros()

    def rows(m: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
        return [
            (m.indices[m.indptr[i] : m.indptr[i + 1]], m.data[m.indptr[i] : m.indptr[i + 1]])
            for i in range(n)
        ]

    r0, r1 = rows(o0), rows(o1)
    B = len(shifts)
    out = np.full(B, max_iters, dtype=np.int64)
    idx = np.arange(B)
    w = np.asarray(omegas, float).copy()
    sc = np.asarray(scales, float).copy()
    d = d0[:, None] + np.asarray(shifts, float)[None, :] + d1[:, None] * sc[None, :]
    b = np.asarray(rhs, float).copy()
    bnorm = np.linalg.norm(b, axis=0)
    x = np.zeros((n, B))
    k = 0
    while k < max_iters and idx.size:
        for i in range(n):
            c0, v0 = r0[i]
            c1, v1 = r1[i]
            s = b[i] - (v0 @ x[c0] if c0.size else 0.0) - sc * (v1 @ x[c1] if c1.size else 0.0)
            x[i] = (1.0 - w) * x[i] + w * s / d[i]
        k += 1
        r = b - (o0 @ x + sc * (o1 @ x) + d * x)
        rel = np.linalg.norm(r, axis=0) / bnorm
        done = (rel < tol) | ~np.isfinite(rel) | (rel > 1e12)
        conv = rel < tol
        if np.any(done):
            out[idx[conv]] = k
            keep = ~done
            idx, w, sc, d = idx[keep], w[keep], sc[keep], d[:, keep]
            b, bnorm, x = b[:, keep], bnorm[keep], x[:, keep]
    return out
