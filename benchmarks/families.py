"""Held-out check: policies on SOR families the default was not tuned on.

* poisson1d: 1-D Laplacian (n = 200) + shift, 12 arms omega in [1.0, 1.98];
* laplace2d-m16: 2-D Laplacian on 16 x 16 + shift, 15 arms in [1.2, 1.97];
* aniso2d: 2-D anisotropic Laplacian (x coupling 1, y coupling eps) + shift on 10 x 10,
  two context features (shift, eps), 20 arms.
Prints ratio to the per-instance oracle (and to the best fixed arm); --json for one object.
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
    elif name == "aniso2d":
        m = 10
        one = sp.identity(m, format="csr")
        A, A1 = sp.kron(one, tridiag(m)).tocsr(), sp.kron(tridiag(m), one).tocsr()
        omegas = np.linspace(1.0, 1.95, 20)
        shifts = 0.01 + 0.3 * rng.beta(1.0, 2.0, size=T)
        scales = rng.uniform(0.2, 1.0, size=T)
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
    ap.add_argument("--policies", default="smooth-ts,chebcb,linucb,tsallis-inf")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, float]] = {}
    for fam in ("poisson1d", "laplace2d-m16", "aniso2d"):
        path = args.out / f"family_{fam}_T{args.T}.npz"
        tab = load_table(path) if path.exists() else family(fam, args.T, seed=7)
        tab.save(path)
        row = {"best_fixed_ratio": float(tab.costs.mean(0).min() / tab.costs.min(1).mean())}
        for pol in args.policies.split(","):
            row[pol] = replay(tab, pol, seed=0, repeats=args.repeats)["ratio_to_oracle"]
        out[fam] = row
        print(f"{fam:15} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
