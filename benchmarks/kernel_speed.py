"""Solver kernels at real size, side by side in one run (the machine is noisy: read ratios).

For n ~ 10^4, 10^5, 10^6 and 10^7 (memory allowing; --quick: 10^4 and 10^5, a smoke run in
seconds), 5-point Laplacian,
omega = 1.9, a fixed number of iterations:

* SOR iteration: ``workers.solvers.sor.sor`` (what the worker runs: the fused compiled sweep +
  residual norm) against pyamg's C++ sweep + a scipy SpMV residual;
* effective GB/s under the byte model below, against this machine's measured copy bandwidth;
* SSOR-PCG to tol 1e-8: ``workers.solvers.pcg.ssor_pcg`` against what a user writes by hand
  (scipy ``cg`` with an SSOR ``LinearOperator`` of two ``spsolve_triangular``), and petsc4py
  (``-ksp_type cg -pc_type sor -pc_sor_symmetric``) when it is installed;
* multicolour SOR on torch (CPU here, CUDA with --device cuda);
* a 10^6-unknown ``sor`` trial through the worker's own code path: its latency against
  kernel time + set-up, and the memory it adds (peak RSS minus the idle process's) against the
  CSR's size (measured in a fresh subprocess).

Byte model of one SOR iteration (float64 values, int32 indices): the sweep streams A once
(12 B per non-zero) plus per row the row pointer (4 B), b (8 B) and x (read + write, 16 B):
12 nnz + 28 n bytes. The fused residual re-reads each row while it is still in cache, so it
adds no memory traffic in the model. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.solvers.csr import prepare  # noqa: E402
from tasks.solvers.generators import build, validate  # noqa: E402
from workers.solvers.pcg import ssor_pcg  # noqa: E402
from workers.solvers.sor import sor  # noqa: E402

OMEGA = 1.9


def copy_gbps(mb: int = 256, reps: int = 5) -> float:
    a = np.ones(mb * 2**20 // 8)
    b = np.empty_like(a)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9  # read + write


def _median_ms(fn: Any, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times))


def sor_vs_pyamg(m: int, iters: int, reps: int) -> dict[str, float]:
    from pyamg import amg_core

    A, b = build(validate({"generator": "laplace2d", "m": m, "seed": 1}))
    P = prepare(A)
    n = P.n
    sor(P, b, OMEGA, 1e-300, 2)  # compiled (and cached on disk) before timing
    ours = _median_ms(lambda: sor(P, b, OMEGA, 1e-300, iters), reps) / iters
    x = np.zeros(n)
    ip, ix, data = P.indptr, P.indices, P.data
    Asp = P.scipy()

    def pyamg_iters() -> None:
        x[:] = 0.0
        r0 = np.linalg.norm(b)
        for _ in range(iters):
            amg_core.sor_gauss_seidel(ip, ix, data, x, b, 0, n, 1, OMEGA)
            float(np.linalg.norm(b - Asp @ x)) / r0

    theirs = _median_ms(pyamg_iters, reps) / iters
    nbytes = 12 * P.nnz + 28 * n
    return {
        "n": n,
        "nnz": P.nnz,
        "sor_ms": ours,
        "pyamg_ms": theirs,
        "ratio": ours / theirs,
        "sor_gbps": nbytes / (ours / 1000.0) / 1e9,
    }


def scipy_ssor_pcg(A: sp.csr_matrix, b: np.ndarray, omega: float, tol: float) -> tuple[int, Any]:
    """What a user writes by hand: scipy cg with an SSOR preconditioner of triangular solves."""
    d = A.diagonal() / omega
    lower = (sp.tril(A, k=-1) + sp.diags(d)).tocsr()
    upper = (sp.triu(A, k=1) + sp.diags(d)).tocsr()

    def apply(r: np.ndarray) -> np.ndarray:
        y = spla.spsolve_triangular(lower, r, lower=True)
        return spla.spsolve_triangular(upper, d * y, lower=False)

    M = spla.LinearOperator(A.shape, matvec=apply, dtype=np.float64)
    count = [0]

    def cb(_x: np.ndarray) -> None:
        count[0] += 1

    x, _info = spla.cg(A, b, rtol=tol, atol=0.0, M=M, maxiter=20_000, callback=cb)
    return count[0], x


def pcg_compare(m: int, omega: float, with_scipy: bool) -> dict[str, Any]:
    A, b = build(validate({"generator": "laplace2d", "m": m, "seed": 2}))
    P = prepare(A)
    ssor_pcg(P, b, omega, 1e-8, 3)  # compile
    t = time.perf_counter()
    res = ssor_pcg(P, b, omega, 1e-8, 20_000)
    ours = (time.perf_counter() - t) * 1000.0
    out: dict[str, Any] = {"n": P.n, "pcg_ms": ours, "pcg_iters": res.iterations}
    if with_scipy:
        t = time.perf_counter()
        iters, _x = scipy_ssor_pcg(P.scipy(), b, omega, 1e-8)
        out["scipy_ms"] = (time.perf_counter() - t) * 1000.0
        out["scipy_iters"] = iters
        out["ratio"] = out["scipy_ms"] / ours
    with contextlib.suppress(ImportError):  # petsc4py is optional
        out.update(_petsc(P.scipy(), b, omega))
    return out


def _petsc(A: sp.csr_matrix, b: np.ndarray, omega: float) -> dict[str, Any]:
    from petsc4py import PETSc  # optional: a source build of PETSc

    M = PETSc.Mat().createAIJ(size=A.shape, csr=(A.indptr, A.indices, A.data))
    ksp = PETSc.KSP().create()
    ksp.setOperators(M)
    ksp.setType("cg")
    ksp.getPC().setType("sor")
    ksp.getPC().setSORType(PETSc.PC.SORType.SYMMETRIC_SWEEP)
    ksp.getPC().setSOR(omega=omega)
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setTolerances(rtol=1e-8, atol=0.0, max_it=20_000)
    x, rhs = M.createVecs()
    rhs.setArray(b)
    t = time.perf_counter()
    ksp.solve(rhs, x)
    return {"petsc_ms": (time.perf_counter() - t) * 1000.0, "petsc_iters": ksp.getIterationNumber()}


def multicolor_ms(m: int, iters: int, device: str) -> float:
    import torch

    from workers.solvers.multicolor import multicolor_sor

    A, b = build(validate({"generator": "laplace2d", "m": m, "seed": 1}))
    P = prepare(A)
    dev = torch.device(device)
    multicolor_sor(P, b, OMEGA, 1e-300, 2, device=dev)  # builds the colour blocks
    res = multicolor_sor(P, b, OMEGA, 1e-300, iters, device=dev)
    return res.kernel_seconds * 1000.0 / iters


WORKER_PROBE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from workers.run_trial import execute
from tasks.kinds import get_kind
from workers.solvers.sor import sor
from tasks.solvers.csr import prepare
from tasks.solvers.generators import build, validate
A, b = build(validate({"generator": "laplace2d", "m": 20}))
sor(prepare(A), b, 1.5, 1e-8, 5)  # compiled kernels loaded: an idle, warmed-up worker
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
idle = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # the peak so far (inherited too) is reset
    f.write("5")
spec = {"system": {"generator": "laplace2d", "m": int(sys.argv[2]), "seed": 3},
        "tol": 1e-300, "max_iters": int(sys.argv[3])}
payload = {"v": 1, "trial": "t", "attempt": 1, "campaign": "bench", "kind": "sor", "spec": spec,
           "arm": {"omega": 1.9}, "limits": {}}
first = execute(payload, "bench")
second = execute(payload, "bench")
peak = status("VmHWM")
nnz, n = first["metrics"]["nnz"], first["metrics"]["n"]
print(json.dumps({"idle_kb": idle, "peak_kb": peak, "csr_bytes": 12 * nnz + 4 * (n + 1),
                  "first": {k: first[k] for k in ("latency_ms", "iterations")} | {
                      k: first["metrics"][k] for k in ("setup_ms", "kernel_ms")},
                  "second": {k: second[k] for k in ("latency_ms", "iterations")} | {
                      k: second["metrics"][k] for k in ("setup_ms", "kernel_ms")}}))
"""


def worker_trial(m: int, iters: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE, str(ROOT), str(m), str(iters)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    added = (r["peak_kb"] - r["idle_kb"]) * 1024
    r["added_over_csr"] = added / r["csr_bytes"]
    for key in ("first", "second"):
        t = r[key]
        t["latency_over_kernel_setup"] = t["latency_ms"] / (t["kernel_ms"] + t["setup_ms"])
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="a smoke run: 10^4 and 10^5 only, fewer repeats"
    )
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--device", default="cpu", help="device of the multicolour path: cpu|cuda")
    args = ap.parse_args()
    grids = [100, 316] if args.quick else [100, 316, 1000, 3162]
    say = (lambda *a: None) if args.json else print
    copy = copy_gbps()
    say(f"copy bandwidth (numpy, read + write): {copy:.1f} GB/s")
    rows: dict[int, dict[str, Any]] = {}
    for m in grids:
        n = m * m
        if n >= 10**7 and _free_gb() < 8:
            say(f"n = {n}: skipped (less than 8 GB free)")
            continue
        iters = max(5, int(2e7 // (5 * n)))
        rows[n] = sor_vs_pyamg(m, iters, reps=3 if args.quick else 7)
        rows[n]["multicolor_ms"] = multicolor_ms(m, max(3, iters // 4), args.device)
        r = rows[n]
        say(
            f"n = {n:>9,}  SOR {r['sor_ms']:8.3f} ms/iter  pyamg+scipy {r['pyamg_ms']:8.3f}"
            f"  ratio {r['ratio']:.2f}  {r['sor_gbps']:5.1f} GB/s"
            f"  multicolour (torch {args.device}) {r['multicolor_ms']:8.3f} ms/iter"
        )
    pcg: dict[int, dict[str, Any]] = {}
    for m in (100, 316) if args.quick else (100, 316, 1000):
        pcg[m * m] = pcg_compare(m, 1.9 if m > 100 else 1.7, with_scipy=True)
        p = pcg[m * m]
        say(
            f"SSOR-PCG n = {m * m:>9,}: ours {p['pcg_ms']:9.1f} ms ({p['pcg_iters']} it)  "
            f"scipy by hand {p['scipy_ms']:9.1f} ms ({p['scipy_iters']} it)  "
            f"speed-up {p['ratio']:.1f}x"
            + (f"  petsc4py {p['petsc_ms']:.1f} ms" if "petsc_ms" in p else "  (no petsc4py)")
        )
    trial = worker_trial(316 if args.quick else 1000, 60)
    say(
        f"{'10^5' if args.quick else '10^6'} sor trial in a worker: latency / (kernel + "
        "set-up) first "
        f"{trial['first']['latency_over_kernel_setup']:.3f}, cached "
        f"{trial['second']['latency_over_kernel_setup']:.3f}; memory added / CSR "
        f"{trial['added_over_csr']:.2f}"
    )
    result = {
        "sor_ms_per_iter": {n: r["sor_ms"] for n, r in rows.items()},
        "pyamg_ms_per_iter": {n: r["pyamg_ms"] for n, r in rows.items()},
        "ratio_to_pyamg": {n: r["ratio"] for n, r in rows.items()},
        "sor_gbps": {n: r["sor_gbps"] for n, r in rows.items()},
        "copy_gbps": copy,
        "multicolor_ms_per_iter": {n: r["multicolor_ms"] for n, r in rows.items()},
        "multicolor_device": args.device,
        "pcg_ms": {n: p["pcg_ms"] for n, p in pcg.items()},
        "pcg_iterations": {n: p["pcg_iters"] for n, p in pcg.items()},
        "pcg_scipy_ms": {n: p["scipy_ms"] for n, p in pcg.items()},
        "pcg_ratio_to_scipy": {n: p["ratio"] for n, p in pcg.items()},
        "pcg_petsc_ms": {n: p["petsc_ms"] for n, p in pcg.items() if "petsc_ms" in p},
        "worker_trial_1e6": trial,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result))


def _free_gb() -> float:
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return float(pages) / 2**30
    except (ValueError, OSError):
        return 0.0


if __name__ == "__main__":
    main()
