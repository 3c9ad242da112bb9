"""PETSc through ask/tell: each arm is a set of PETSc options applied to a KSP before each
solve; the iteration count (or the seconds) is told after.

    arm {"ksp": "cg", "pc": "sor", "omega": 1.4}
        -> -ksp_type cg -pc_type sor -pc_sor_symmetric -pc_sor_omega 1.4
    arm {"ksp": "cg", "pc": "gamg", "threshold": 0.05}
        -> -ksp_type cg -pc_type gamg -pc_gamg_threshold 0.05
    arm {"ksp": "cg", "pc": "hypre", "strong_threshold": 0.5}
        -> -ksp_type cg -pc_type hypre -pc_hypre_type boomeramg
           -pc_hypre_boomeramg_strong_threshold 0.5

The simulation solves a sequence of shifted 2-D Laplacians (I + s L) whose shift s changes
every step; the context is log10(s). Under MPI, rank 0 asks and tells and broadcasts the arm
(every rank must apply the same options). Needs petsc4py (and PETSc; hypre arms only where
PETSc was built with hypre); where it is not installed this prints how to get it and the
mapping it would apply, and exits 0. A source build of PETSc is not part of `make test`.

    python examples/petsc_options.py --steps 100
    mpiexec -n 4 python examples/petsc_options.py --steps 100 --no-cluster
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARMS: list[dict[str, Any]] = [
    {"ksp": "cg", "pc": "jacobi"},
    *({"ksp": "cg", "pc": "sor", "omega": w} for w in (1.0, 1.3, 1.6, 1.9)),
    *({"ksp": "cg", "pc": "gamg", "threshold": t} for t in (0.0, 0.02, 0.05, 0.1)),
]
HYPRE_ARMS: list[dict[str, Any]] = [
    {"ksp": "cg", "pc": "hypre", "strong_threshold": t} for t in (0.25, 0.5, 0.7)
]


def petsc_options(arm: dict[str, Any]) -> dict[str, str]:
    """PETSc options (names without the leading dash) that apply ``arm`` to a KSP."""
    opts = {"ksp_type": str(arm["ksp"]), "pc_type": str(arm["pc"])}
    pc = arm["pc"]
    if pc == "sor":
        opts["pc_sor_symmetric"] = ""  # SSOR: symmetric, as CG needs
        opts["pc_sor_omega"] = repr(float(arm["omega"]))
    elif pc == "gamg":
        opts["pc_gamg_threshold"] = repr(float(arm["threshold"]))
    elif pc == "hypre":
        opts["pc_hypre_type"] = "boomeramg"
        opts["pc_hypre_boomeramg_strong_threshold"] = repr(float(arm["strong_threshold"]))
    elif pc not in ("jacobi", "none"):
        raise ValueError(f"arm {arm}: no PETSc mapping for pc={pc!r}")
    return opts


def command_line(arm: dict[str, Any]) -> str:
    return " ".join(f"-{k} {v}".rstrip() for k, v in petsc_options(arm).items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--m", type=int, default=256, help="interior points per side")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--cost", choices=("iterations", "seconds"), default="seconds")
    ap.add_argument("--no-cluster", action="store_true", help="use your own scheduler")
    args = ap.parse_args()
    try:
        from petsc4py import PETSc
    except ImportError:
        print(
            "skipped: petsc4py is not installed in this environment. Install PETSc and "
            "petsc4py (conda install -c conda-forge petsc4py, or pip install petsc petsc4py: "
            "a source build) and run this again. The mapping it applies:"
        )
        for arm in ARMS + HYPRE_ARMS:
            print(f"  {arm} -> {command_line(arm)}")
        return 0
    return simulate(PETSc, args)


def simulate(PETSc: Any, args: Any) -> int:  # pragma: no cover - needs PETSc
    import scipy.sparse as sp

    comm = PETSc.COMM_WORLD
    rank = comm.getRank()
    arms = ARMS + (HYPRE_ARMS if "hypre" in PETSc.Sys.getPackageInfo() else [])
    m = args.m
    h2 = (1.0 / (m + 1)) ** 2
    t1 = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    L = ((sp.kron(sp.identity(m), t1) + sp.kron(t1, sp.identity(m))) / h2).tocsr()
    camp = cluster = None
    if rank == 0:
        from app.client import Client
        from app.config import Settings
        from app.dev.local import LocalCluster

        settings = Settings.from_env()
        if not args.no_cluster:
            cluster = LocalCluster(settings, workers=0).__enter__()
        client = Client(settings=settings)
        camp = client.create_campaign(
            f"petsc-{uuid.uuid4().hex[:6]}", "external", arms, context_features=["log_shift"]
        )
    x = b = None
    for k in range(args.steps):
        s = 10.0 ** (-4.0 + 6.0 * math.sin(math.pi * k / args.steps) ** 2)
        A_sp = (sp.identity(m * m) + s * L).tocsr()
        A = PETSc.Mat().createAIJ(size=A_sp.shape, comm=comm)
        A.setUp()
        lo, hi = A.getOwnershipRange()  # each rank sets its own rows
        rows = A_sp[lo:hi]
        A.setValuesCSR(rows.indptr, rows.indices, rows.data)
        A.assemble()
        if x is None:
            x, b = A.createVecs()
            b.set(1.0)
            x.set(0.0)
        d = camp.ask({"log_shift": math.log10(s / h2)}) if camp is not None else None
        arm = comm.tompi4py().bcast(d.arm if d is not None else None, root=0)
        opts = PETSc.Options()
        for key, value in petsc_options(arm).items():
            opts.setValue(f"bq_{key}", value)
        ksp = PETSc.KSP().create(comm=comm)
        ksp.setOptionsPrefix("bq_")
        ksp.setOperators(A)
        ksp.setTolerances(rtol=1e-8)
        ksp.setFromOptions()
        t0 = time.perf_counter()
        ksp.solve(b, x)
        secs = time.perf_counter() - t0
        its, ok = ksp.getIterationNumber(), ksp.getConvergedReason() > 0
        for key in petsc_options(arm):
            opts.delValue(f"bq_{key}")
        if camp is not None and d is not None:
            cost = float(its) if args.cost == "iterations" else secs
            camp.tell(d, cost=cost, iterations=int(its), converged=bool(ok))
            print(f"step {k:4d} s={s:9.3g} {command_line(arm):60} its={its:5d} {secs:.3f}s")
        ksp.destroy()
        A.destroy()
    if cluster is not None:
        cluster.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
