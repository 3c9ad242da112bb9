"""Worker side of ``scipy-gmres``: build the matrix (cached per process), factor, solve."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from app import Outcome


@lru_cache(maxsize=8)
def convection_diffusion(m: int, peclet: float, angle: float, shift: float) -> sp.csc_matrix:
    """First-order upwind convection-diffusion on an m x m interior grid, h = 1 / (m + 1),
    scaled by h^2 (diagonal dominant for any Peclet number)."""
    h = 1.0 / (m + 1)
    bx, by = peclet * np.cos(angle) * h, peclet * np.sin(angle) * h
    one = sp.identity(m, format="csr")

    def axis(b: float) -> sp.csr_matrix:
        # -u'' + b u' with the upwind difference on the side the flow comes from
        lower = -1.0 - max(b, 0.0)
        upper = -1.0 + min(b, 0.0)
        diag = 2.0 + abs(b)
        return sp.diags([lower, diag, upper], [-1, 0, 1], shape=(m, m), format="csr")

    A = sp.kron(one, axis(bx)) + sp.kron(axis(by), one) + shift * h * h * sp.identity(m * m)
    return sp.csc_matrix(A)


def run(
    spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
) -> Outcome:
    from banditq_krylov.kind import GmresKind

    spec = GmresKind().validate_spec(spec)
    opts = options or {}
    t0 = time.perf_counter()
    A = convection_diffusion(spec["m"], spec["peclet"], spec["angle"], spec["shift"])
    b = np.full(A.shape[0], 1.0 / (spec["m"] + 1) ** 2)
    t1 = time.perf_counter()
    ilu = spla.spilu(A, drop_tol=float(arm["drop_tol"]), fill_factor=20.0)
    M = spla.LinearOperator(A.shape, ilu.solve)
    t2 = time.perf_counter()
    inner = 0

    def count(_residual: float) -> None:
        nonlocal inner
        inner += 1

    restart = int(arm["restart"])
    x, info = spla.gmres(
        A,
        b,
        M=M,
        rtol=spec["tol"],
        atol=0.0,
        restart=restart,
        maxiter=max(1, -(-spec["max_iters"] // restart)),
        callback=count,
        callback_type="pr_norm",
    )
    t3 = time.perf_counter()
    residual = float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))
    converged = info == 0
    seconds = t3 - t0
    cost = (
        seconds
        if opts.get("cost") == "seconds"
        else float(inner if converged else spec["max_iters"])
    )
    return Outcome(
        cost=cost,
        iterations=inner,
        converged=converged,
        residual=residual,
        device="cpu",
        metrics={
            "n": int(A.shape[0]),
            "ilu_nnz": int(ilu.L.nnz + ilu.U.nnz),
            "build_ms": (t1 - t0) * 1000.0,
            "factor_ms": (t2 - t1) * 1000.0,
            "solve_ms": (t3 - t2) * 1000.0,
        },
    )
