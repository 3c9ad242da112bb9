"""Held-out check: policies on SOR families the default was not tuned on.

* poisson1d: 1-D Laplacian (n = 200) + shift, 12 arms omega in [1.0, 1.98];
* laplace2d-m16: 2-D Laplacian on 16 x 16 + shift, 15 arms in [1.2, 1.97];
* aniso2d: 2-D anisotropic Laplacian (x coupling 1, y coupling eps) + shift on 10 x 10,
  two context features (shift, eps), 20 arms;
* drift2d-50: a time-stepping sequence on the same anisotropic operator whose context drifts
  into ranges not seen before: the shift falls from 0.4 toward 0.005 (ever harder systems)
  while eps sweeps [0.2, 1] back and forth, two features, 50 arms in [1.0, 1.98]; one table
  per seed (``--seeds``), the policies' own seeds fixed.
* drift3d-50: the same drift with a third feature, the grid size m in {8, 10, 12, 14} drawn
  per step (other grid sizes than the tuning tables), 50 arms;
* heat-pcg: the ``ssor-pcg`` kind on warm-started Crank-Nicolson steps of the 2-D heat
  equation (m = 24, a second grid size), context (diffusivity c(t), forcing amplitude): c
  stays below 0.1 for the first third and then rises to 10, a range never seen before;
  each step starts from the previous solution; 50 arms omega in [1.0, 1.98].
Prints the ratio to the per-instance oracle, over the first 10% of the sequence, and seconds
per step; --json for one object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.offline.replay import replay  # noqa: E402
from app.offline.sorbatch import sor_iterations  # noqa: E402
from app.offline.tables import CostTable, load_table  # noqa: E402
from tasks.linsys import laplace2d, paper_rhs  # noqa: E402
from tasks.solvers.csr import prepare  # noqa: E402
from workers.solvers.pcg import ssor_pcg  # noqa: E402

DRIFTING = ("drift2d-50", "drift3d-50", "heat-pcg")  # one table per seed of --seeds


def tridiag(n: int) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def aniso(m: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    one = sp.identity(m, format="csr")
    return sp.kron(one, tridiag(m)).tocsr(), sp.kron(tridiag(m), one).tocsr()


def drift_contexts(T: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) of the drifting families: the shift falls from 0.4 toward 0.005
    (ever harder systems) while the anisotropy sweeps [0.2, 1] back and forth."""
    s = np.linspace(0.0, 1.0, T)
    shifts = 0.005 + 0.395 * (1.0 - s) ** 2 * np.exp(rng.normal(0.0, 0.05, T))
    scales = 0.6 + 0.4 * np.sin(2.0 * np.pi * (1.5 * s + rng.uniform()))
    return shifts, np.clip(scales + rng.normal(0.0, 0.02, T), 0.2, 1.0)


def drift3d(T: int, rng: np.random.Generator) -> CostTable:
    omegas = np.linspace(1.0, 1.98, 50)
    shifts, scales = drift_contexts(T, rng)
    sizes = rng.choice([8, 10, 12, 14], size=T)
    costs = np.zeros((T, len(omegas)))
    K = len(omegas)
    for m in np.unique(sizes):
        rows = np.flatnonzero(sizes == m)
        A, A1 = aniso(int(m))
        rhs = np.stack([paper_rhs(int(m) ** 2, rng) for _ in rows], axis=1)
        costs[rows] = sor_iterations(
            A,
            np.repeat(shifts[rows], K),
            np.tile(omegas, len(rows)),
            np.repeat(rhs, K, axis=1),
            max_iters=100_000,
            A1=A1,
            scales=np.repeat(scales[rows], K),
        ).reshape(len(rows), K)
    return CostTable(np.stack([shifts, scales, sizes.astype(float)], axis=1), omegas, costs)


def heat_pcg(T: int, rng: np.random.Generator, m: int = 24) -> CostTable:
    """Crank-Nicolson on the unit square, (I + s L) u_{k+1} = (I - s L) u_k + dt f, s = dt c / 2,
    every step solved by SSOR-PCG from u_k for each arm (tol 1e-8, MATLAB pcg's rule)."""
    dt, h = 1e-3, 1.0 / (m + 1)
    L = (laplace2d(m) / h**2).tocsr()
    eye = sp.identity(m * m, format="csr")
    g = np.arange(1, m + 1) * h
    X, Y = np.meshgrid(g, g, indexing="ij")
    omegas = np.linspace(1.0, 1.98, 50)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    u = np.zeros(m * m)
    ctx = np.zeros((T, 2))
    costs = np.zeros((T, len(omegas)))
    for k in range(T):
        t = (k + 1) * dt
        wave = np.sin(2.0 * np.pi * t / (T * dt) * 1.5)
        c = max(0.1 * wave, -10.0 * wave) * np.exp(rng.normal(0.0, 0.05))
        amp = 100.0 * np.exp(rng.normal(0.0, 0.5))
        cx, cy = 0.5 + 0.25 * np.cos(phase + 6.0 * t), 0.5 + 0.25 * np.sin(phase + 6.0 * t)
        f = (amp * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * 0.05**2))).ravel()
        s = 0.5 * dt * c
        b = u - s * (L @ u) + dt * f
        P = prepare(eye + s * L)
        out = None
        for i, w in enumerate(omegas):
            out = ssor_pcg(P, b, float(w), 1e-8, 5_000, x0=u)
            costs[k, i] = out.iterations if out.converged else 5_000
        assert out is not None
        u = out.x
        ctx[k] = (c, amp)
    return CostTable(ctx, omegas, costs)


def family(name: str, T: int, seed: int) -> CostTable:
    rng = np.random.default_rng(seed)
    if name == "drift3d-50":
        return drift3d(T, rng)
    if name == "heat-pcg":
        return heat_pcg(T, rng)
    if name == "poisson1d":
        A, omegas = tridiag(200), np.linspace(1.0, 1.98, 12)
        shifts = 0.002 + 0.05 * rng.beta(0.7, 2.0, size=T)
        ctx, A1, scales = shifts[:, None], None, None
    elif name == "laplace2d-m16":
        A, omegas = laplace2d(16), np.linspace(1.2, 1.97, 15)
        shifts = -0.05 + 0.5 * rng.beta(1.0, 3.0, size=T)
        ctx, A1, scales = shifts[:, None], None, None
    elif name in ("aniso2d", "drift2d-50"):
        A, A1 = aniso(10)
        if name == "aniso2d":
            omegas = np.linspace(1.0, 1.95, 20)
            shifts = 0.01 + 0.3 * rng.beta(1.0, 2.0, size=T)
            scales = rng.uniform(0.2, 1.0, size=T)
        else:  # drifting: each stretch of the sequence is a context range new to the policy
            omegas = np.linspace(1.0, 1.98, 50)
            shifts, scales = drift_contexts(T, rng)
        ctx = np.stack([shifts, scales], axis=1)
    else:
        raise ValueError(name)
    n, K = A.shape[0], len(omegas)
    rhs = np.stack([paper_rhs(n, rng) for _ in range(T)], axis=1)
    costs = (
        sor_iterations(
            A,
            np.repeat(shifts, K),
            np.tile(omegas, T),
            np.repeat(rhs, K, axis=1),
            max_iters=100_000,
            A1=A1,
            scales=None if scales is None else np.repeat(scales, K),
        )
        .reshape(T, K)
        .astype(float)
    )
    return CostTable(ctx, omegas, costs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--T", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2,3,4", help="table seeds of the drifting families")
    ap.add_argument(
        "--families", default="poisson1d,laplace2d-m16,aniso2d,drift2d-50,drift3d-50,heat-pcg"
    )
    ap.add_argument("--policies", default="smooth-ts,chebcb,linucb,tsallis-inf")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a smoke run (~30 s)")
    args = ap.parse_args()
    if args.quick:
        args.T, args.repeats, args.seeds, args.policies = 80, 1, "0", "smooth-ts"
    args.out.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, float]] = {}
    for fam in args.families.split(","):
        seeds = [int(v) for v in args.seeds.split(",")] if fam in DRIFTING else [7]
        rows: list[dict[str, float]] = []
        for seed in seeds:
            path = args.out / f"family_{fam}_T{args.T}_s{seed}.npz"
            tab = load_table(path) if path.exists() else family(fam, args.T, seed=seed)
            tab.save(path)
            row = {"best_fixed_ratio": float(tab.costs.mean(0).min() / tab.costs.min(1).mean())}
            for pol in args.policies.split(","):
                r = replay(tab, pol, seed=0, repeats=args.repeats)
                row[pol] = r["ratio_to_oracle"]
                row[f"{pol} first10%"] = r["first_10pct_ratio"]
                row[f"{pol} s/step"] = r["seconds"] / (args.repeats * tab.T)
            rows.append(row)
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        if len(rows) > 1:
            for pol in args.policies.split(","):
                mean[f"{pol} worst seed"] = float(max(r[pol] for r in rows))
        out[fam] = mean
        seed_list = ",".join(map(str, seeds))
        print(f"{fam:15} (seeds {seed_list}) best fixed {mean['best_fixed_ratio']:.3f}")
        for pol in args.policies.split(","):
            worst = f"  worst seed {mean[pol + ' worst seed']:.3f}" if len(rows) > 1 else ""
            print(
                f"  {pol:14} {mean[pol]:.3f}  first 10% {mean[pol + ' first10%']:.3f}"
                f"  {mean[pol + ' s/step'] * 1000:.2f} ms/step{worst}",
                flush=True,
            )
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
