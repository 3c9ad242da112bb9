"""SOR in torch on the worker's device: natural ordering, M = D/omega + L.

x_{k+1} = x_k + M^{-1} (b - A x_k), x_0 = 0, until ||b - A x_k|| / ||b|| < tol. The triangular
solve uses a dense lower-triangular M on the device (n up to ``DENSE_LIMIT``); beyond that,
scipy's sparse triangular solve on the CPU, so any size works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

DENSE_LIMIT = 4096
DIVERGED = 1e12


@dataclass
class SorResult:
    x: np.ndarray
    iterations: int
    converged: bool
    residual: float
    device: str
    diverged: bool


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def sor(
    A: sp.csr_matrix,
    b: np.ndarray,
    omega: float,
    tol: float,
    max_iters: int,
    device: torch.device | None = None,
) -> SorResult:
    if not 0.0 < omega < 2.0:
        raise ValueError(f"omega={omega} must be in (0, 2)")
    n = A.shape[0]
    if n > DENSE_LIMIT:
        return _sor_scipy(A, b, omega, tol, max_iters)
    dev = device or pick_device()
    # Dense on the device: M is dense anyway, and dense matvecs are what GPUs do best.
    Ad = torch.from_numpy(A.toarray()).to(dev)
    lower = sp.tril(A, k=-1).toarray() + np.diag(A.diagonal() / omega)
    M = torch.from_numpy(lower).to(dev)
    bt = torch.from_numpy(np.asarray(b, np.float64)).to(dev)
    bnorm = float(torch.linalg.vector_norm(bt))
    x = torch.zeros_like(bt)
    r = bt.clone()
    rel = 1.0
    k = 0
    while k < max_iters:
        x = x + torch.linalg.solve_triangular(M, r[:, None], upper=False)[:, 0]
        k += 1
        r = bt - Ad @ x
        rel = float(torch.linalg.vector_norm(r)) / bnorm
        if rel < tol or not math.isfinite(rel) or rel > DIVERGED:
            break
    diverged = not math.isfinite(rel) or rel > DIVERGED
    return SorResult(
        x.cpu().numpy(),
        k,
        rel < tol,
        rel if math.isfinite(rel) else float("inf"),
        dev.type,
        diverged,
    )


def _sor_scipy(
    A: sp.csr_matrix, b: np.ndarray, omega: float, tol: float, max_iters: int
) -> SorResult:
    M = (sp.tril(A, k=-1) + sp.diags(A.diagonal() / omega)).tocsr()
    x = np.zeros_like(b)
    r = b.copy()
    bnorm = float(np.linalg.norm(b))
    rel, k = 1.0, 0
    while k < max_iters:
        x = x + spla.spsolve_triangular(M, r, lower=True)
        k += 1
        r = b - A @ x
        rel = float(np.linalg.norm(r)) / bnorm
        if rel < tol or not math.isfinite(rel) or rel > DIVERGED:
            break
    diverged = not math.isfinite(rel) or rel > DIVERGED
    return SorResult(x, k, rel < tol, rel if math.isfinite(rel) else float("inf"), "cpu", diverged)
