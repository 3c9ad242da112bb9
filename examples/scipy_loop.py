"""Your own solver loop, tuned through ask/tell: a time-stepping simulation that solves every
step with scipy's conjugate gradients in this process and asks banditq which preconditioner
to use for the step (none, Jacobi, or pyamg's smoothed-aggregation multigrid at two strength
thresholds), telling it the wall time the step took.

Each step solves a backward-Euler step of -div(a grad u) = f on the unit square with a
piecewise-constant coefficient a whose contrast (max/min) swings from 1 to 10^4 and back over
the run (the repository's ``variable_diffusion2d`` generator; the shift of the implicit step
is a multiple of the smallest eigenvalue). Without a preconditioner CG is fastest at low
contrast and fails at high contrast; Jacobi is safe everywhere; multigrid needs few
iterations but pays its set-up every step. The context is log10(contrast) and the cost the
step's seconds (set-up included). Jacobi is the fallback arm with a budget of 4x its expected
time: an arm past its budget is stopped, the step re-solved with Jacobi, and the tell says it
did not converge (the policy learns "at least this much"), so a failing arm costs at most the
budget plus the fallback.

Reported: the tuned run's total seconds against every fixed preconditioner over the same
steps (a fixed arm that fails gets the fallback too). Runs a local scheduler on the embedded
default (or on BANDITQ_DATABASE_URL / BANDITQ_BROKER_URL with --no-cluster and your own).
Last line with --json: one JSON object.

    python examples/scipy_loop.py --quick
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: one thread per solve, as timed

import argparse
import json
import math
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.client import Client  # noqa: E402
from app.config import Settings  # noqa: E402
from app.dev.local import LocalCluster  # noqa: E402

ARMS: list[dict[str, Any]] = [
    {"pc": "none"},
    {"pc": "jacobi"},
    {"pc": "amg", "strength": 0.0},
    {"pc": "amg", "strength": 0.25},
]
FALLBACK = 1  # Jacobi: never fails, never expensive to set up
TOL = 1e-8


class OverBudget(Exception):
    """The arm ran past its budget: stopped, and the step re-solved with the fallback."""


def contrast(t: float) -> float:
    """1 at the start and the end of the run, 10^4 half way."""
    return float(10.0 ** (4.0 * math.sin(math.pi * t) ** 2))


def preconditioner(arm: dict[str, Any], A: sp.csr_matrix) -> Any:
    """The arm's preconditioner for CG (None: unpreconditioned)."""
    pc = arm["pc"]
    if pc == "none":
        return None
    if pc == "jacobi":
        inv = 1.0 / A.diagonal()
        return spla.LinearOperator(A.shape, matvec=lambda v: inv * v)
    import pyamg

    ml = pyamg.smoothed_aggregation_solver(A, strength=("symmetric", {"theta": arm["strength"]}))
    return ml.aspreconditioner(cycle="V")


def solve(
    arm: dict[str, Any], A: sp.csr_matrix, b: np.ndarray, x0: np.ndarray, budget: float | None
) -> tuple[np.ndarray, int, float]:
    """CG with the arm's preconditioner: (x, iterations, seconds); OverBudget past
    ``budget`` seconds (checked at set-up and after every iteration)."""
    t0 = time.perf_counter()
    M = preconditioner(arm, A)
    its = [0]

    def check(_xk: np.ndarray) -> None:
        its[0] += 1
        if budget is not None and time.perf_counter() - t0 > budget:
            raise OverBudget

    if budget is not None and time.perf_counter() - t0 > budget:
        raise OverBudget
    maxiter = 20 * int(math.sqrt(A.shape[0]))  # far past what a useful preconditioner needs
    x, info = spla.cg(A, b, x0=x0, rtol=TOL, atol=0.0, M=M, maxiter=maxiter, callback=check)
    if info != 0:
        raise OverBudget
    return x, its[0], time.perf_counter() - t0


def steps(m: int, n: int) -> list[tuple[float, sp.csr_matrix, float]]:
    """(time, operator, context) of every step."""
    from tasks.solvers.generators import build_matrix, validate

    out = []
    for k in range(n):
        t = (k + 0.5) / n
        c = contrast(t)
        spec = {"generator": "variable_diffusion2d", "m": m, "contrast": c, "blocks": 8}
        A = build_matrix(validate({**spec, "coeff_seed": 1, "rel_shift": 1.0}))
        out.append((t, sp.csr_matrix(A), math.log10(c)))
    return out


def forcing(m: int, t: float) -> np.ndarray:
    g = (np.arange(m) + 1.0) / (m + 1)
    X, Y = np.meshgrid(g, g, indexing="ij")
    cx, cy = 0.5 + 0.25 * math.cos(2 * math.pi * t), 0.5 + 0.25 * math.sin(2 * math.pi * t)
    return np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / 0.01).ravel()


def run(
    m: int,
    plan: list[tuple[float, sp.csr_matrix, float]],
    choose: Callable[[float], tuple[dict[str, Any], float | None, Any]],
    tell: Callable[[Any, float, int, bool], None],
) -> float:
    """The simulation; ``choose(context)`` gives (arm, budget, handle), ``tell(handle,
    seconds, iterations, converged)`` reports. Returns its total solve seconds."""
    u = np.zeros(m * m)
    total = 0.0
    for t, A, ctx in plan:
        b = u + forcing(m, t)
        arm, budget, handle = choose(ctx)
        t0 = time.perf_counter()
        try:
            u, its, _secs = solve(arm, A, b, u, budget)
            converged = True
        except OverBudget:  # stopped: the fallback solves the step
            u, its, _secs = solve(ARMS[FALLBACK], A, b, u, None)
            converged = False
        spent = time.perf_counter() - t0
        total += spent
        tell(handle, spent, its, converged)
    return total


def _fixed(arm: dict[str, Any]) -> Callable[[float], tuple[dict[str, Any], float | None, Any]]:
    return lambda _ctx: (arm, None, None)


def _ignore(_handle: Any, _secs: float, _its: int, _ok: bool) -> None:
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 40x40 grid, 80 steps (~1 min)")
    ap.add_argument("--m", type=int, default=96, help="interior points per side")
    ap.add_argument("--steps", type=int, default=200, help="time steps")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object")
    ap.add_argument("--no-cluster", action="store_true", help="use your own scheduler")
    args = ap.parse_args()
    m, n = (40, 80) if args.quick else (args.m, args.steps)
    plan = steps(m, n)
    settings = Settings.from_env()
    name = f"scipy-loop-{uuid.uuid4().hex[:6]}"
    cluster = None if args.no_cluster else LocalCluster(settings, workers=0)
    if cluster is not None:
        cluster.__enter__()
    try:
        with Client(settings=settings) as client:
            camp = client.create_campaign(
                name,
                "external",
                ARMS,
                context_features=["log_contrast"],
                policy_config={"fallback": {"arm": FALLBACK, "budget": 4.0}},
            )

            def choose(ctx: float) -> tuple[dict[str, Any], float | None, Any]:
                d = camp.ask({"log_contrast": ctx}, timeout=120)
                return d.arm, d.budget, d

            def tell(d: Any, secs: float, its: int, ok: bool) -> None:
                camp.tell(d, cost=secs, iterations=its, converged=ok)

            tuned = run(m, plan, choose, tell)
            chosen = [r["arm_name"] for r in camp.results()]
    finally:
        if cluster is not None:
            cluster.__exit__(None, None, None)
    fixed = {}
    for arm in ARMS:
        label = ",".join(f"{k}={v}" for k, v in arm.items())
        fixed[label] = run(m, plan, _fixed(arm), _ignore)
        print(f"  fixed {label}: {fixed[label]:.2f} s", file=sys.stderr, flush=True)
    best = min(fixed, key=fixed.__getitem__)
    print(f"{m * m} unknowns, {n} steps; tuned through ask/tell: {tuned:.2f} s")
    for label, secs in sorted(fixed.items(), key=lambda p: p[1]):
        print(f"  fixed {label:28} {secs:8.2f} s  ({secs / tuned:.2f}x the tuned run)")
    counts = {c: chosen.count(c) for c in sorted(set(chosen))}
    print(f"arms the tuned run chose: {counts}")
    if args.json:
        out = {
            "unknowns": m * m,
            "steps": n,
            "tuned_s": tuned,
            "fixed_s": fixed,
            "best_fixed": best,
            "tuned_vs_best_fixed": tuned / fixed[best],
            "chosen": counts,
        }
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
