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
) -> np.ndarray:
    """Iterations for each system ``(A + shifts[j] I) x = rhs[:, j]`` with ``omegas[j]``.

    ``shifts``, ``omegas``: (B,); ``rhs``: (n, B). Returns (B,) ints; ``max_iters`` where SOR
    did not converge in time.
    """
    A = sp.csr_matrix(A)
    n = A.shape[0]
    B = len(shifts)
    diag = A.diagonal()
    off = A - sp.diags(diag)
    off = sp.csr_matrix(off)
    off.eliminate_zeros()
    rows = [
        (
            off.indices[off.indptr[i] : off.indptr[i + 1]],
            off.data[off.indptr[i] : off.indptr[i + 1]],
        )
        for i in range(n)
    ]
    out = np.full(B, max_iters, dtype=np.int64)
    idx = np.arange(B)
    w = np.asarray(omegas, float).copy()
    d = diag[:, None] + np.asarray(shifts, float)[None, :]  # (n, B)
    b = np.asarray(rhs, float).copy()
    bnorm = np.linalg.norm(b, axis=0)
    x = np.zeros((n, B))
    k = 0
    while k < max_iters and idx.size:
        for i in range(n):
            cols, vals = rows[i]
            s = b[i] - vals @ x[cols] if cols.size else b[i].copy()
            x[i] = (1.0 - w) * x[i] + w * s / d[i]
        k += 1
        r = b - (off @ x + d * x)
        rel = np.linalg.norm(r, axis=0) / bnorm
        done = (rel < tol) | ~np.isfinite(rel) | (rel > 1e12)
        conv = rel < tol
        if np.any(done):
            out[idx[conv]] = k
            keep = ~done
            idx, w, d, b, bnorm, x = (
                idx[keep],
                w[keep],
                d[:, keep],
                b[:, keep],
                bnorm[keep],
                x[:, keep],
            )
    return out
