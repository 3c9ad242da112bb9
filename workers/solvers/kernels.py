"""Compiled CSR loops (numba, compiled on first use and cached on disk).

Every kernel takes the CSR triple (``indptr``/``indices`` int32, ``data`` float64, sorted
column indices) and works in place where it says so. Natural row order; single-threaded (the
forward sweep is sequential by nature). Not thread-safe on shared ``x``.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@_jit
def sweep_forward(indptr, indices, data, omega_inv_diag, x, b):  # type: ignore[no-untyped-def]
    """One forward SOR sweep in place: x_i += omega (b_i - A_i x) / a_ii, i = 0..n-1."""
    n = x.shape[0]
    for i in range(n):
        s = b[i]
        for k in range(indptr[i], indptr[i + 1]):
            s -= data[k] * x[indices[k]]
        x[i] += omega_inv_diag[i] * s


@_jit
def sweep_backward(indptr, indices, data, omega_inv_diag, x, b):  # type: ignore[no-untyped-def]
    """One backward SOR sweep in place (rows n-1..0)."""
    n = x.shape[0]
    for i in range(n - 1, -1, -1):
        s = b[i]
        for k in range(indptr[i], indptr[i + 1]):
            s -= data[k] * x[indices[k]]
        x[i] += omega_inv_diag[i] * s


@_jit
def sweep_forward_residual(  # type: ignore[no-untyped-def]
    indptr, indices, data, omega_inv_diag, x, b, ready_ptr, ready_rows
):
    """A forward sweep fused with ||b - A x|| of the swept x, in one pass over A.

    Row r's residual needs every x_j of its row swept; it is computed right after the sweep
    reaches its last column (``ready_rows[ready_ptr[i]:ready_ptr[i+1]]`` are the rows whose
    last column is i), while the row is still in cache. Returns the residual's 2-norm."""
    n = x.shape[0]
    total = 0.0
    for i in range(n):
        s = b[i]
        for k in range(indptr[i], indptr[i + 1]):
            s -= data[k] * x[indices[k]]
        x[i] += omega_inv_diag[i] * s
        for q in range(ready_ptr[i], ready_ptr[i + 1]):
            r = ready_rows[q]
            t = b[r]
            for k in range(indptr[r], indptr[r + 1]):
                t -= data[k] * x[indices[k]]
            total += t * t
    return np.sqrt(total)


@_jit
def residual(indptr, indices, data, x, b, out):  # type: ignore[no-untyped-def]
    """out = b - A x; returns ||out||."""
    n = x.shape[0]
    total = 0.0
    for i in range(n):
        s = b[i]
        for k in range(indptr[i], indptr[i + 1]):
            s -= data[k] * x[indices[k]]
        out[i] = s
        total += s * s
    return np.sqrt(total)


@_jit
def spmv_dot(indptr, indices, data, p, out):  # type: ignore[no-untyped-def]
    """out = A p; returns p . A p (the CG step's curvature) in the same pass."""
    n = p.shape[0]
    total = 0.0
    for i in range(n):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * p[indices[k]]
        out[i] = s
        total += p[i] * s
    return total


@_jit
def ssor_apply(indptr, indices, data, omega_inv_diag, r, z):  # type: ignore[no-untyped-def]
    """z = M^-1 r for M = (D/w + L) (D/w)^-1 (D/w + U) w/(2-w): one SSOR sweep (forward,
    then backward) of A z = r from z = 0. Returns r . z (CG's rho) in the backward pass."""
    n = r.shape[0]
    for i in range(n):
        z[i] = 0.0
    for i in range(n):  # forward: only columns < i are non-zero in z so far
        s = r[i]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j < i:
                s -= data[k] * z[j]
            else:
                break  # sorted columns: the rest are >= i (and z_j = 0 for j > i)
        z[i] = omega_inv_diag[i] * s
    rho = 0.0
    for i in range(n - 1, -1, -1):
        s = r[i]
        for k in range(indptr[i], indptr[i + 1]):
            s -= data[k] * z[indices[k]]
        z[i] += omega_inv_diag[i] * s
        rho += r[i] * z[i]
    return rho


@_jit
def greedy_coloring(indptr, indices):  # type: ignore[no-untyped-def]
    """Colour rows so that no two coupled rows share a colour: the smallest colour not used
    by an already-coloured neighbour, in natural order (red-black on 5- and 7-point grids)."""
    n = indptr.shape[0] - 1
    color = np.full(n, -1, dtype=np.int32)
    mark = np.full(n + 1, -1, dtype=np.int64)
    for i in range(n):
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if color[j] >= 0:
                mark[color[j]] = i
        c = 0
        while mark[c] == i:
            c += 1
        color[i] = c
    return color
