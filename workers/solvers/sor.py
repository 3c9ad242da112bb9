"""SOR: x_{k+1} = x_k + M^-1 (b - A x_k), M = D/omega + L (natural order; one forward sweep
in place), or the multicolour ordering (one colour at a time, see ``multicolor``).

Stops at the first k with ||b - A x_k|| / ||b - A x_0|| < tol, at ``max_iters``, or when the
relative residual exceeds ``DIVERGED`` or stops being finite. A capped or diverged run is a
result (``converged`` false), never an exception.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tasks.solvers.csr import PreparedMatrix
from workers.solvers import kernels

DIVERGED = 1e12
ORDERINGS = ("natural", "multicolor")


@dataclass
class SolveResult:
    x: np.ndarray
    iterations: int
    converged: bool
    #: final ||b - A x|| / ||b - A x_0|| (inf when it stopped being finite)
    residual: float
    diverged: bool
    device: str
    #: seconds in the iteration loop (kernels and convergence checks)
    kernel_seconds: float
    #: geometric-mean contraction of the residual per iteration (SOR's observed rate)
    contraction: float | None
    metrics: dict[str, Any] = field(default_factory=dict)


def _check(omega: float, tol: float, max_iters: int) -> None:
    if not 0.0 < omega < 2.0:
        raise ValueError(f"omega={omega} must be in (0, 2)")
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol={tol} must be in (0, 1)")
    if max_iters < 1:
        raise ValueError(f"max_iters={max_iters} must be >= 1")


def _start(
    P: PreparedMatrix,
    b: np.ndarray,
    omega: float,
    tol: float,
    max_iters: int,
    x0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Checked arguments: (contiguous float64 b, x0 as a fresh array or zeros, ||b - A x0||)."""
    _check(omega, tol, max_iters)
    b = np.ascontiguousarray(b, dtype=np.float64)
    x = np.zeros(P.n) if x0 is None else np.array(x0, dtype=np.float64, copy=True)
    r0 = kernels.residual(*P.k, x, b, np.empty(P.n))
    return b, x, float(r0)


def contraction(rel: float, iterations: int) -> float | None:
    if iterations <= 0 or not math.isfinite(rel) or rel <= 0:
        return None
    return float(rel ** (1.0 / iterations))


def stopped(rel: float, tol: float) -> bool:
    """The loop ends here: converged, or diverged (too large or not finite)."""
    return rel < tol or not math.isfinite(rel) or rel > DIVERGED


def finish(
    x: np.ndarray, k: int, rel: float, tol: float, device: str, t0: float, broke: bool = False
) -> SolveResult:
    """The result of a loop started at ``t0`` that ran ``k`` iterations down to ``rel``
    (``broke``: stopped on a breakdown, e.g. a non-positive curvature in CG)."""
    diverged = broke or not math.isfinite(rel) or rel > DIVERGED
    return SolveResult(
        x,
        k,
        rel < tol and not diverged,
        rel if math.isfinite(rel) else float("inf"),
        diverged,
        device,
        time.perf_counter() - t0,
        contraction(rel, k),
    )


def sor(
    P: PreparedMatrix,
    b: np.ndarray,
    omega: float,
    tol: float,
    max_iters: int,
    x0: np.ndarray | None = None,
) -> SolveResult:
    """Natural-order SOR on the CPU (compiled fused sweep + residual)."""
    b, x, r0 = _start(P, b, omega, tol, max_iters, x0)
    t0 = time.perf_counter()
    if r0 == 0.0:
        return SolveResult(x, 0, True, 0.0, False, "cpu", 0.0, None)
    wd = P.omega_inv_diag(omega)
    rel, k = 1.0, 0
    while k < max_iters:
        norm = kernels.sweep_forward_residual(*P.k, wd, x, b, *P.ready)
        k += 1
        rel = norm / r0
        if stopped(rel, tol):
            break
    return finish(x, k, rel, tol, "cpu", t0)


def sweep(P: PreparedMatrix, x: np.ndarray, b: np.ndarray, omega: float, kind: str) -> None:
    """One SOR sweep of ``A x = b`` in place: ``forward`` (M = D/w + L), ``backward``
    (M = D/w + U) or ``symmetric`` (forward then backward, omega in both: pyamg 5.4.1's own
    symmetric sweep drops omega)."""
    wd = P.omega_inv_diag(omega)
    if kind in ("forward", "symmetric"):
        kernels.sweep_forward(*P.k, wd, x, b)
    if kind in ("backward", "symmetric"):
        kernels.sweep_backward(*P.k, wd, x, b)
    if kind not in ("forward", "backward", "symmetric"):
        raise ValueError(f"sweep kind {kind!r}: forward, backward or symmetric")
