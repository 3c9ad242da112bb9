"""The paper's third experiment through the service: a 2-D heat equation whose every
Crank-Nicolson step is one ``camp.solve`` of the ``ssor-pcg`` kind, omega chosen per step.

u_t = c(t) (u_xx + u_yy) + f on the unit square (zero on the boundary), m x m interior points,
h = 1/(m+1), diffusivity c(t) = max(0.1 sin(2 pi t), -10 sin(2 pi t)) in [0, 10], dt = 1e-3,
f a Gaussian bump moving on a circle. Each step solves (I + dt/2 c L) u' = (I - dt/2 c L) u +
dt f with L the 5-point Laplacian / h^2: the operator is ``LinearSystem.affine(L, b, 1,
dt c / 2)`` of L stored once; the right-hand side is ``SolutionOf(previous step, 1, -dt c / 2,
dt f)``, computed on the worker from the previous solution (f a GridField: a formula), the initial
guess is the previous solution too, and the context is c(t). All steps are submitted at once
in calls of ``--batch`` (``SolutionOf.item`` names the previous step within a call) and run
back to back on one worker running one trial at a time in a thread (``BANDITQ_WORKER_POOL=
threads``: no process hand-off between steps); the scheduler keeps ``--in-flight`` (4)
decided ahead, so each decision has seen every result but the last three.

Reported against each fixed omega in {1, 1.3, 1.5, 1.75, 1.95} and unpreconditioned CG (the
same simulation run locally with the kernel layer) and the per-step best omega found offline
(golden-section search, 12 evaluations, on a subsample of steps), plus the share of wall
time that is control plane. Runs a local scheduler and worker on the embedded default (or on
BANDITQ_DATABASE_URL / BANDITQ_BROKER_URL with --no-cluster and your own). Last line: JSON.

    python examples/heat2d.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
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
from tasks.chain import SolutionOf  # noqa: E402
from tasks.gridfield import GridField  # noqa: E402
from tasks.linsys import LinearSystem  # noqa: E402
from tasks.solvers.csr import prepare  # noqa: E402
from tasks.solvers.generators import build_matrix, validate  # noqa: E402
from workers.solvers.pcg import ssor_pcg  # noqa: E402

ARMS = [round(1.0 + 0.05 * i, 2) for i in range(20)]
FIXED = (1.0, 1.3, 1.5, 1.75, 1.95)
DT = 1e-3
TOL = 1e-8


def diffusivity(t: float) -> float:
    s = math.sin(2 * math.pi * t)
    return max(0.1 * s, -10.0 * s)


def laplacian(m: int) -> sp.csr_matrix:
    """L = 5-point Laplacian / h^2 (positive definite)."""
    h = 1.0 / (m + 1)
    return (build_matrix(validate({"generator": "laplace2d", "m": m})) / h**2).tocsr()


def bump(m: int, t: float) -> GridField:
    """dt f(t): a Gaussian bump (height 100, width 0.05) on a circle of radius 0.25 around
    the centre, as a formula the worker evaluates (nothing uploaded per step)."""
    center = (0.5 + 0.25 * math.cos(2 * math.pi * t), 0.5 + 0.25 * math.sin(2 * math.pi * t))
    return GridField.gaussian(m, center, width=0.05, height=100.0 * DT)


def step_rhs(L: sp.csr_matrix, u: np.ndarray, c: float, t: float, m: int) -> np.ndarray:
    return u - 0.5 * DT * c * (L @ u) + bump(m, t + 0.5 * DT).values()


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, _x: np.ndarray) -> None:
        self.n += 1


def local_run(L: sp.csr_matrix, m: int, steps: int, omega: float | None) -> int:
    """Total iterations of the simulation run locally: SSOR-PCG at a fixed omega, or plain
    CG (omega None), each step warm-started from its own previous solution."""
    n = L.shape[0]
    u = np.zeros(n)
    total = 0
    base = prepare(L)  # each step's operator is I + (dt c / 2) L on the same structure
    for k in range(steps):
        t = k * DT
        c = diffusivity(t + DT)
        b = step_rhs(L, u, c, t, m)
        P = base.affine(1.0, 0.5 * DT * c)
        if omega is None:
            counter = _Counter()
            u, _ = spla.cg(P.scipy(), b, x0=u, rtol=TOL, atol=0.0, maxiter=20_000, callback=counter)
            total += counter.n
            continue
        res = ssor_pcg(P, b, omega, TOL, 20_000, u)
        u = res.x
        total += res.iterations
    return total


def golden_best(P: Any, b: np.ndarray, x0: np.ndarray, evals: int = 12) -> int:
    """The fewest iterations over omega in [1, 1.99] by golden-section search (integer
    counts, ties broken towards the smaller bracket), ``evals`` solves."""
    lo, hi = 1.0, 1.99
    g = (math.sqrt(5) - 1) / 2
    seen: dict[float, int] = {}

    def f(w: float) -> int:
        if w not in seen:
            seen[w] = ssor_pcg(P, b, w, TOL, 20_000, x0).iterations
        return seen[w]

    a, d = hi - g * (hi - lo), lo + g * (hi - lo)
    while len(seen) < evals:
        if f(a) <= f(d):
            hi, d = d, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, d
            d = lo + g * (hi - lo)
    return min(seen.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="m = 49, 300 steps")
    ap.add_argument("--m", type=int, default=199, help="interior points per axis (<= 399)")
    ap.add_argument("--steps", type=int, default=2000, help="time steps (dt = 1e-3)")
    ap.add_argument(
        "--batch", type=int, default=50, help="steps per submit_many call (one transaction)"
    )
    ap.add_argument(
        "--in-flight", type=int, default=4, help="steps decided at a time, the running one included"
    )
    ap.add_argument(
        "--pool",
        choices=["threads", "prefork"],
        default="threads",
        help="the local worker's pool (BANDITQ_WORKER_POOL)",
    )
    ap.add_argument("--sample", type=int, default=25, help="per-step best on every k-th step")
    ap.add_argument("--no-cluster", action="store_true", help="use a running scheduler/worker")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument(
        "--no-offline",
        action="store_true",
        help="skip the offline comparisons (fixed omegas, CG, per-step best): timings only",
    )
    args = ap.parse_args()
    m, steps = (49, 300) if args.quick else (args.m, args.steps)
    if not 2 <= m <= 399:
        ap.error("--m must be in 2..399")

    def say(*a: Any) -> None:  # with --json the last stdout line is the JSON; words go to stderr
        print(*a, file=sys.stderr if args.json else sys.stdout, flush=True)

    settings = Settings.from_env()
    client = Client(settings=settings)
    name = f"heat2d-m{m}-{time.strftime('%Y%m%d-%H%M%S')}"
    camp = client.create_campaign(
        name, "ssor-pcg", {"omega": ARMS}, context_features=["c"], max_in_flight=args.in_flight
    )
    L = laplacian(m)
    n = L.shape[0]
    say(f"heat2d: n = {n:,} unknowns, {steps} steps, campaign {name}")
    # One worker holding the next steps while it runs one: steps follow without a broker
    # round trip (BANDITQ_WORKER_PREFETCH) or a hand-off to a pool process (the threads pool).
    worker_env = {
        "BANDITQ_WORKER_PREFETCH": str(args.in_flight),
        "BANDITQ_WORKER_POOL": args.pool,
    }
    cluster = None if args.no_cluster else LocalCluster(settings, workers=1, extra_env=worker_env)
    if cluster is not None:
        cluster.__enter__()
    try:
        if cluster is not None:
            cluster.wait_ready()  # the wall time below is the simulation's, not start-up's
        handle = client.store_matrix(L)  # the operator is stored once
        ids: list[int] = []
        t_run = time.perf_counter()
        for start in range(0, steps, args.batch):
            items: list[tuple[Any, dict[str, float], dict[str, Any]]] = []
            for k in range(start, min(start + args.batch, steps)):
                t = k * DT
                c = diffusivity(t + DT)
                s = 0.5 * DT * c
                f = bump(m, t + 0.5 * DT)
                # (I - s L) u_k + dt f, with u_k the previous step's solution: computed on
                # the worker, which has it, so the steps run back to back without this loop.
                # The previous step is an earlier item of this call, or the last id returned.
                if k > start:
                    prev = k - start - 1
                    b: Any = SolutionOf.item(prev, 1.0, -s, f)
                    x0: Any = SolutionOf.item(prev)
                elif ids:
                    b, x0 = SolutionOf(ids[-1], 1.0, -s, f), SolutionOf(ids[-1])
                else:
                    b, x0 = f, None
                system = LinearSystem.affine(handle, b, alpha=1.0, beta=s)
                items.append((system, {"c": c}, {"x0": x0}))
            ids += camp.submit_many(items, tol=TOL, max_iters=20_000, return_solution=True)
        camp.wait(timeout=3600, progress=not args.json)
        wall_s = time.perf_counter() - t_run
    finally:
        if cluster is not None:
            cluster.__exit__(None, None, None)
    rows = {int(r["instance_seq"]): r for r in camp.results() if r["status"] == "succeeded"}
    if len(rows) != steps:
        sys.exit(f"heat2d: {steps - len(rows)} of {steps} steps failed; see `banditq status`")
    iterations = [int(rows[k]["iterations"] or 0) for k in sorted(rows)]
    total_it = sum(iterations)
    solve_s = sum(float(rows[k]["latency_ms"] or 0.0) for k in rows) / 1000.0
    overhead = wall_s - solve_s
    fixed: dict[float, int] = {}
    cg: int | None = None
    ratio: float | None = None
    per_step_best: int | None = None
    sampled: list[tuple[int, float, np.ndarray, np.ndarray]] = []
    if not args.no_offline:
        for k in range(0, steps, args.sample):
            u = camp.solution(ids[k - 1]).x if k else np.zeros(n)
            c = diffusivity(k * DT + DT)
            sampled.append((k, c, step_rhs(L, u, c, k * DT, m), u))
        chosen = [iterations[k] for k, _c, _b, _u in sampled]
        say("offline comparisons (local kernels, the same simulation) ...")
        fixed = {w: local_run(L, m, steps, w) for w in FIXED}
        cg = local_run(L, m, steps, None)
        base = prepare(L)
        best_sampled = [
            golden_best(base.affine(1.0, 0.5 * DT * c), b, x0) for _k, c, b, x0 in sampled
        ]
        ratio = sum(chosen) / max(1, sum(best_sampled))
        per_step_best = int(round(total_it / ratio))
    out = {
        "beat_fixed": {str(w): total_it < v for w, v in fixed.items()},
        "steps": steps,
        "n": n,
        "total_iterations": total_it,
        "fixed_iterations": {str(w): v for w, v in fixed.items()},
        "cg_iterations": cg,
        "per_step_best_iterations": per_step_best,
        "ratio_to_per_step_best": ratio,
        "sampled_steps": len(sampled),
        "wall_s": wall_s,
        "solve_s": solve_s,
        "overhead_share": overhead / wall_s,
        "overhead_ms_per_step": 1000.0 * overhead / steps,
    }
    say(f"banditq (ssor-pcg, omega learnt per step): {total_it} iterations")
    for w, v in fixed.items():
        say(f"fixed omega {w:<5}: {v} iterations; {_verdict(total_it, v)}")
    if cg is not None and ratio is not None:
        say(f"unpreconditioned CG : {cg} iterations ({cg / total_it:.2f}x)")
        say(
            f"per-step best omega (golden section, {len(sampled)} sampled steps): "
            f"banditq / best = {ratio:.3f}"
        )
    say(
        f"wall {wall_s:.1f} s, worker solve time {solve_s:.1f} s, control plane "
        f"{100 * out['overhead_share']:.1f}% ({out['overhead_ms_per_step']:.1f} ms per step)"
    )
    print(json.dumps(out))


def _verdict(ours: int, theirs: int) -> str:
    """Plainly: did banditq beat this fixed setting, and by how much."""
    if ours < theirs:
        return f"banditq beat it ({100 * (1 - ours / theirs):.0f}% fewer iterations)"
    if ours == theirs:
        return "banditq did not beat it (a tie)"
    return f"banditq did not beat it ({100 * (ours / theirs - 1):.0f}% more iterations)"


if __name__ == "__main__":
    main()

