"""Worker side of the ``krylov`` kind: the system from this process's matrix cache, the
arm's preconditioner (set up once per matrix and configuration, kept with the matrix: a
time-stepping sequence that reuses one matrix pays the AMG set-up once), scipy's Krylov
method, and an :class:`Outcome` whose cost is the wall time in seconds (set-up included)
or a deterministic work count.

Loaded only on workers (the kind names it as its ``runner``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from tasks.kinds.base import Outcome
from tasks.kinds.krylov import check_arm, resolved
from tasks.kinds.linear import validate_solver_spec
from workers.kinds.solvers import checked_sizes, initial_guess, prepared, store_solution
from workers.solvers import kernels

#: solves from the last iterate when a method stopped on its own estimate above the tolerance
MAX_RESTARTS = 4
#: preconditioner -> (apply function, work of one application in matrix-vector products)
Preconditioner = tuple[Callable[[np.ndarray], np.ndarray] | None, float]


#: products timed for :func:`matvec_seconds` (the fastest counts: the others met noise)
MATVEC_REPEATS = 3


class OverBudget(Exception):
    """The arm has spent its decision's budget."""


def matvec_seconds(A: sp.spmatrix) -> float:
    """Seconds one product of ``A`` with a vector takes here (the fastest of a few): the unit
    of a budget given in products (``options["budget_unit"] == "matvec"``)."""
    v = np.ones(A.shape[1])
    best = math.inf
    for _ in range(MATVEC_REPEATS):
        t0 = time.perf_counter()
        A @ v
        best = min(best, time.perf_counter() - t0)
    return max(best, 1e-9)


def product_seconds(P: Any) -> float:
    """:func:`matvec_seconds` of a prepared system's matrix, measured once per matrix and
    kept with it (``P.extra``): every trial on the matrix reports the same unit."""
    got = P.extra.get("matvec_s")
    if got is None:
        got = P.extra["matvec_s"] = matvec_seconds(P.scipy())
    return float(got)


def run_krylov(
    spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
) -> Outcome:
    """Solve with the arm's configuration. With a decision budget (``options["budget"]``,
    in the campaign's cost unit, and ``options["fallback_arm"]``) an arm that spends it, or
    stops without converging, is stopped and the fallback configuration solves: the cost is
    what both took, and the arm's observation is censored. A budget in products of the
    system's matrix with a vector (``options["budget_unit"] == "matvec"``: set before the
    campaign knows its fallback's cost) is converted with the product's time measured here
    (by time) or taken as it is (by work, which counts products)."""
    opts = options or {}
    spec = validate_solver_spec(spec)
    budget, fallback = opts.get("budget"), opts.get("fallback_arm")
    if budget is None or not isinstance(fallback, dict):
        return _run(spec, arm, opts, None)
    t0 = time.perf_counter()
    if opts.get("budget_unit") == "matvec" and opts.get("cost", "time") == "time":
        budget = float(budget) * product_seconds(prepared(spec)[0])
    try:
        out = _run(spec, arm, opts, float(budget))
        if out.converged:
            return out
        spent, why = out.cost, "did not converge"
    except OverBudget as exc:
        spent, why = float(exc.args[0]), f"stopped at its budget of {float(budget):.4g}"
    plain = {k: v for k, v in opts.items() if k not in ("budget", "budget_unit", "fallback_arm")}
    fb = _run(spec, fallback, plain, None)
    # by time: what the caller waited, both solves and set-ups
    total = time.perf_counter() - t0 if opts.get("cost", "time") == "time" else spent + fb.cost
    fb.metrics.update(
        arm_stopped=why, arm_cost=spent, fallback_cost=fb.cost, fallback=dict(fallback)
    )
    return replace(fb, cost=total, censored=True)


def _run(
    spec: dict[str, Any], arm: dict[str, Any], opts: dict[str, Any], budget: float | None
) -> Outcome:
    cfg = resolved(check_arm(arm, "arm"))
    by_time = opts.get("cost", "time") == "time"
    t0 = time.perf_counter()
    P, b, _hit, _s = prepared(spec)
    x0 = checked_sizes(P.n, b, initial_guess(spec))
    A = P.scipy()
    key = "krylov:" + json.dumps(
        {k: v for k, v in cfg.items() if k not in ("method", "restart")}, sort_keys=True
    )
    cached = key in P.extra
    if not cached:
        P.extra[key] = _preconditioner(A, cfg)
    apply, weight = P.extra[key]
    setup_s = time.perf_counter() - t0
    counts = {"matvec": 0, "precond": 0}

    def work() -> float:
        return counts["matvec"] + weight * counts["precond"]

    def matvec(v: np.ndarray) -> np.ndarray:
        counts["matvec"] += 1
        if budget is not None:  # checked once per product: the arm stops within one
            spent = time.perf_counter() - t0 if by_time else work()
            if spent > budget:
                raise OverBudget(spent)
        return np.asarray(A @ v)

    def precond(v: np.ndarray) -> np.ndarray:
        counts["precond"] += 1
        assert apply is not None
        return apply(np.ascontiguousarray(v, dtype=np.float64))

    n = P.n
    Aop = spla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    M = None if apply is None else spla.LinearOperator((n, n), matvec=precond, dtype=np.float64)
    t1 = time.perf_counter()
    bnorm = float(np.linalg.norm(b)) or 1.0
    iterations, tol, left = 0, spec["tol"], spec["max_iters"]
    # Every method is held to the same test, the true relative residual ||b - A x|| / ||b||
    # <= tol (MINRES and restarted GMRES stop on their own estimates): a method that stops
    # early is restarted from its iterate, its iterations and work counted, until it holds
    # or the iteration cap is spent.
    rtol = tol
    for _ in range(MAX_RESTARTS):
        x0, info, its = _solve(cfg, Aop, b, x0, M, rtol, left)
        iterations += its
        left -= max(its, 1)
        residual = float(np.linalg.norm(b - A @ x0)) / bnorm
        if info < 0 or not math.isfinite(residual) or residual <= tol or left <= 0:
            break
        rtol *= max(tol / residual, 1e-3)  # its own test was that much looser than ours
    assert x0 is not None
    x = x0
    solve_s = time.perf_counter() - t1
    # after the solve, outside its cost and budget: the product's time, the unit in which
    # a result's time compares across systems of different sizes (a metric, for SQL)
    matvec_ms = product_seconds(P) * 1000.0
    converged = info >= 0 and math.isfinite(residual) and residual <= tol
    return Outcome(
        cost=setup_s + solve_s if by_time else work(),
        iterations=iterations,
        converged=converged,
        residual=residual if math.isfinite(residual) else None,
        device="cpu",
        metrics={
            "n": n,
            "nnz": P.nnz,
            "setup_ms": setup_s * 1000.0,
            "solve_ms": solve_s * 1000.0,
            "matvec_ms": matvec_ms,
            "work": work(),
            "matvecs": counts["matvec"],
            "precond_applications": counts["precond"],
            "precond_cached": cached,
            "method": cfg["method"],
            "preconditioner": cfg["preconditioner"],
        },
        outputs={"x": store_solution(x)} if spec["return_solution"] else None,
    )


def _solve(
    cfg: dict[str, Any],
    A: spla.LinearOperator,
    b: np.ndarray,
    x0: np.ndarray | None,
    M: spla.LinearOperator | None,
    tol: float,
    max_iters: int,
) -> tuple[np.ndarray, int, int]:
    """(x, scipy's info, iterations) of the arm's method."""
    its = [0]

    def count(*_a: Any) -> None:
        its[0] += 1

    method = cfg["method"]
    common: dict[str, Any] = {"x0": x0, "rtol": tol, "atol": 0.0, "M": M, "callback": count}
    if method == "gmres":
        restart = int(cfg["restart"])
        x, info = spla.gmres(
            A,
            b,
            restart=restart,
            maxiter=max(1, math.ceil(max_iters / restart)),
            callback_type="pr_norm",
            **common,
        )
    elif method == "minres":
        x, info = spla.minres(A, b, x0=x0, rtol=tol, maxiter=max_iters, M=M, callback=count)
    else:
        solver = spla.cg if method == "cg" else spla.bicgstab
        x, info = solver(A, b, maxiter=max_iters, **common)
    return np.asarray(x, dtype=np.float64), int(info), its[0]


def _preconditioner(A: sp.csr_matrix, cfg: dict[str, Any]) -> Preconditioner:
    """The arm's preconditioner of A: its application and its work per application."""
    pc = cfg["preconditioner"]
    nnz_row = A.nnz / max(A.shape[0], 1)
    if pc == "none":
        return None, 0.0
    d = A.diagonal()
    if pc == "jacobi":
        dinv = 1.0 / d
        return (lambda r: dinv * r), 1.0 / nnz_row
    if pc == "ssor":
        Ac = sp.csr_matrix(A)
        Ac.sort_indices()
        ip, ix, data = Ac.indptr.view(np.uint32), Ac.indices.view(np.uint32), Ac.data
        wd = float(cfg["omega"]) / d

        def ssor(r: np.ndarray) -> np.ndarray:
            z = np.empty_like(r)
            kernels.ssor_apply(ip, ix, data, wd, r, z)
            return z

        return ssor, 2.0
    if pc == "ilu":
        ilu = spla.spilu(
            sp.csc_matrix(A), drop_tol=float(cfg["drop_tol"]), fill_factor=float(cfg["fill_factor"])
        )
        return ilu.solve, (ilu.L.nnz + ilu.U.nnz) / max(A.nnz, 1)
    if pc in ("amg-sa", "amg-rs"):
        return _amg(A, cfg)
    return _chebyshev(A, d, int(cfg["degree"]))


def _amg(A: sp.csr_matrix, cfg: dict[str, Any]) -> Preconditioner:
    import pyamg

    sweep = (
        ("gauss_seidel", {"sweep": "symmetric"})
        if cfg["smoother"] == "gauss_seidel"
        else ("jacobi", {"omega": 2.0 / 3.0})
    )
    theta = float(cfg["strength"])
    if cfg["preconditioner"] == "amg-sa":
        ml = pyamg.smoothed_aggregation_solver(
            A, strength=("symmetric", {"theta": theta}), presmoother=sweep, postsmoother=sweep
        )
    else:
        ml = pyamg.ruge_stuben_solver(
            A, strength=("classical", {"theta": theta}), presmoother=sweep, postsmoother=sweep
        )
    M = ml.aspreconditioner(cycle="V")
    # a V-cycle: two smoothing sweeps and a residual on every level, in fine-level products
    return M.matvec, 3.0 * float(ml.operator_complexity())


def _chebyshev(A: sp.csr_matrix, d: np.ndarray, degree: int) -> Preconditioner:
    """``degree`` steps of the Chebyshev iteration for D^-1 A z = D^-1 r from z = 0, over
    [hi / 30, hi] with hi 1.05 x the largest Ritz value of the Jacobi-scaled matrix (the
    usual smoother interval): a fixed polynomial, symmetric positive definite for SPD A."""
    dinv = 1.0 / d
    hi = 1.05 * _largest(A, dinv)
    lo = hi / 30.0
    theta, delta = (hi + lo) / 2.0, (hi - lo) / 2.0
    sigma = theta / delta

    def cheb(r: np.ndarray) -> np.ndarray:
        rho = 1.0 / sigma
        res = dinv * r
        dz = res / theta
        z = dz.copy()
        for _ in range(degree - 1):
            res = dinv * (r - A @ z)
            rho_new = 1.0 / (2.0 * sigma - rho)
            dz = rho_new * rho * dz + (2.0 * rho_new / delta) * res
            z += dz
            rho = rho_new
        return z

    return cheb, float(degree - 1) + 1.0 / (A.nnz / max(A.shape[0], 1))


def _largest(A: sp.csr_matrix, dinv: np.ndarray, steps: int = 20) -> float:
    """The largest eigenvalue of D^-1 A by power iteration (a few steps)."""
    v = np.random.default_rng(0).standard_normal(A.shape[0])
    lam = 1.0
    for _ in range(steps):
        w = dinv * (A @ v)
        lam = float(np.linalg.norm(w) / np.linalg.norm(v))
        v = w / np.linalg.norm(w)
    return lam
