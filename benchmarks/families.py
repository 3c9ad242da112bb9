"""Held-out check: policies on SOR families the default was not tuned on.

* poisson1d: 1-D Laplacian (n = 200) + shift, 12 arms omega in [1.0, 1.98];
* laplace2d-m16: 2-D Laplacian on 16 x 16 + shift, 15 arms in [1.2, 1.97];
* aniso2d: 2-D anisotropic Laplacian (x coupling 1, y coupling eps) + shift on 10 x 10,
  two context features (shift, eps), 20 arms;
* drift2d-50: a time-stepping sequence on the same anisotropic operator whose context drifts
  into ranges not seen before: the shift falls from 0.4 toward 0.005 (ever harder systems)
  while eps sweeps [0.2, 1] back and forth, two features, 50 arms in [1.0, 1.98]; one table
  per seed (``--seeds``), the policies' own seeds fixed.
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


def tridiag(n: int) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def family(name: str, T: int, seed: int) -> CostTable:
    rng = np.random.default_rng(seed)
    if name == "poisson1d":
        A, omegas = tridiag(200), np.linspace(1.0, 1.98, 12)
        shifts = 0.002 + 0.05 * rng.beta(0.7, 2.0, size=T)
        ctx, A1, scales = shifts[:, None], None, None
    elif name == "laplace2d-m16":
        A, omegas = laplace2d(16), np.linspace(1.2, 1.97, 15)
        shifts = -0.05 + 0.5 * rng.beta(1.0, 3.0, size=T)
        ctx, A1, scales = shifts[:, None], None, None
    elif name in ("aniso2d", "drift2d-50"):
        m = 10
        one = sp.identity(m, format="csr")
        A, A1 = sp.kron(one, tridiag(m)).tocsr(), sp.kron(tridiag(m), one).tocsr()
        if name == "aniso2d":
            omegas = np.linspace(1.0, 1.95, 20)
            shifts = 0.01 + 0.3 * rng.beta(1.0, 2.0, size=T)
            scales = rng.uniform(0.2, 1.0, size=T)
        else:  # drifting: each stretch of the sequence is a context range new to the policy
            omegas = np.linspace(1.0, 1.98, 50)
            s = np.linspace(0.0, 1.0, T)
            shifts = 0.005 + 0.395 * (1.0 - s) ** 2 * np.exp(rng.normal(0.0, 0.05, T))
            scales = 0.6 + 0.4 * np.sin(2.0 * np.pi * (1.5 * s + rng.uniform()))
            scales = np.clip(scales + rng.normal(0.0, 0.02, T), 0.2, 1.0)
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
    ap.add_argument("--seeds", default="0,1,2,3,4", help="table seeds of the drifting family")
    ap.add_argument("--families", default="poisson1d,laplace2d-m16,aniso2d,drift2d-50")
    ap.add_argument("--policies", default="smooth-ts,chebcb,linucb,tsallis-inf")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, float]] = {}
    for fam in args.families.split(","):
        seeds = [int(v) for v in args.seeds.split(",")] if fam == "drift2d-50" else [7]
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
