"""Conjugate gradients preconditioned by SSOR(omega), natural ordering.

M = (D/w + L) (D/w)^-1 (D/w + U) w/(2-w), applied as one SSOR sweep from zero, forward then
backward (as pyamg and PETSc do; the paper's MATLAB code applies backward then forward: the
iteration counts differ slightly, a scale on M changes nothing). Stops at the first k with the
unpreconditioned ||b - A x_k|| / ||b|| < tol (MATLAB pcg's rule, so a warm start x_0 close to
the solution saves iterations; the recursive residual, checked against the true one at the
end), at ``max_iters`` or on a breakdown (A or M not positive definite): a result with
``converged`` false, never an exception.
"""

from __future__ import annotations

import time

import numpy as np

from tasks.solvers.csr import PreparedMatrix
from workers.solvers import kernels
from workers.solvers.sor import SolveResult, _start, finish, stopped


def ssor_pcg(
    P: PreparedMatrix,
    b: np.ndarray,
    omega: float,
    tol: float,
    max_iters: int,
    x0: np.ndarray | None = None,
) -> SolveResult:
    b, x, res0 = _start(P, b, omega, tol, max_iters, x0)
    t0 = time.perf_counter()
    r0 = float(np.linalg.norm(b)) or res0  # relative to ||b|| (see the module docstring)
    if res0 < tol * r0:
        return SolveResult(x, 0, True, res0 / r0, False, "cpu", 0.0, None)
    ip, ix, a = P.k
    wd = P.omega_inv_diag(omega)
    r = np.empty(P.n)
    kernels.residual(ip, ix, a, x, b, r)
    z = np.empty(P.n)
    q = np.empty(P.n)
    rho = kernels.ssor_apply(ip, ix, a, wd, r, z)
    p = z.copy()
    rel, k, breakdown = 1.0, 0, False
    while k < max_iters:
        if not rho > 0.0:  # M not positive definite (or r = 0)
            breakdown = rho != 0.0
            break
        pq = kernels.spmv_dot(ip, ix, a, p, q)
        if not pq > 0.0:  # A not positive definite along p
            breakdown = True
            break
        alpha = rho / pq
        x += alpha * p
        r -= alpha * q
        k += 1
        rel = float(np.linalg.norm(r)) / r0
        if stopped(rel, tol):
            break
        rho_new = kernels.ssor_apply(ip, ix, a, wd, r, z)
        p *= rho_new / rho
        p += z
        rho = rho_new
    out = finish(x, k, rel, tol, "cpu", t0, breakdown)
    if out.converged:  # the recursive residual drifts from the true one in floating point
        true_rel = kernels.residual(ip, ix, a, x, b, q) / r0
        out.metrics["true_residual"] = float(true_rel)
    return out
