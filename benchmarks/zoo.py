"""A zoo of random workload families, and the honest protocol for policies (issue 26).

Each zoo seed draws its own family: the operator (2-D or 3-D Laplacian, anisotropic 2-D,
variable coefficients with a new random field per instance, warm-started heat steps), the
solver (SOR, or SSOR-PCG), the context ranges (narrow or wide, i.i.d. or drifting, reaching
into near-singular shifts or not), 1-3 context features (the grid size as one of them, or
not), 8-50 arms (ordered omegas, or the same arms in an order that carries no meaning, or
unordered solver configurations mixing SOR and SSOR-PCG in work units), warm starts, and
optional multiplicative noise on the costs (wall time is noisy). Every arm's cost on every
instance is computed (a full-information table), so a policy is replayed exactly and
compared with the per-instance oracle and the best fixed arm in hindsight.

Protocol: design on zoo seeds 0-49; report on seeds 100-199, which no design decision looked
at. The report gives, per policy, the median, 90th percentile and worst ratio of mean cost to
the oracle, the first-10% ratio, and the ratio to the best fixed arm.

    python benchmarks/zoo.py --seeds 100-199 --policies default,chebcb,knn-full [--json]

Tables are cached under ``--out`` (bench-out/zoo): computing one takes seconds to a minute.
``knn-full`` is a full-information nearest-neighbour reference (it sees every arm's cost of
past instances), not a bandit: it says how much the context explains.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.offline.replay import replay_once  # noqa: E402
from app.offline.sorbatch import sor_iterations  # noqa: E402
from app.offline.tables import CostTable, load_table  # noqa: E402
from tasks.linsys import paper_rhs  # noqa: E402
from tasks.solvers.csr import prepare  # noqa: E402
from workers.solvers.pcg import ssor_pcg  # noqa: E402
from workers.solvers.sor import sor  # noqa: E402

DESIGN_SEEDS = range(0, 50)
REPORT_SEEDS = range(100, 200)
MAX_ITERS = 2000


@dataclass
class Family:
    """What one zoo seed drew."""

    seed: int
    operator: str  # laplace2d | laplace3d | aniso2d | varcoef2d | heat2d
    solver: str  # sor | ssor-pcg | mixed
    m: int  # grid points per side (the size feature's base)
    T: int
    K: int
    arms: str  # ordered | shuffled | configs
    drift: bool
    wide: bool
    singular: bool
    size_feature: bool
    noise: float

    def describe(self) -> str:
        parts = [self.operator, self.solver, f"K={self.K}", self.arms]
        parts.append("drift" if self.drift else "iid")
        parts.append("wide" if self.wide else "narrow")
        if self.singular:
            parts.append("near-singular")
        if self.size_feature:
            parts.append("size feature")
        if self.noise:
            parts.append(f"noise {self.noise:.2f}")
        return " ".join(parts)


def draw(seed: int) -> Family:
    rng = np.random.default_rng(10_000 + seed)
    op = str(rng.choice(["laplace2d", "laplace3d", "aniso2d", "varcoef2d", "heat2d"]))
    arms = str(rng.choice(["ordered", "ordered", "shuffled", "configs"]))
    solver = "mixed" if arms == "configs" else str(rng.choice(["sor", "sor", "ssor-pcg"]))
    m = int(rng.choice([5, 6]) if op == "laplace3d" else rng.choice([8, 10, 12]))
    return Family(
        seed=seed,
        operator=op,
        solver=solver,
        m=m,
        T=int(rng.choice([120, 160, 200])),
        K=int(rng.choice([9, 12]) if arms == "configs" else rng.choice([8, 12, 20, 30, 50])),
        arms=arms,
        drift=bool(rng.random() < 0.4),
        wide=bool(rng.random() < 0.5),
        singular=bool(rng.random() < 0.3),
        size_feature=bool(rng.random() < 0.3 and op != "heat2d"),
        noise=float(rng.choice([0.0, 0.0, 0.05, 0.15])),
    )


def _tri(n: int) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def _lap(m: int, dims: int) -> sp.csr_matrix:
    one, t = sp.identity(m, format="csr"), _tri(m)
    if dims == 2:
        return (sp.kron(one, t) + sp.kron(t, one)).tocsr()
    return (
        sp.kron(sp.kron(one, one), t)
        + sp.kron(sp.kron(one, t), one)
        + sp.kron(sp.kron(t, one), one)
    ).tocsr()


def _aniso(m: int, eps: float) -> sp.csr_matrix:
    one, t = sp.identity(m, format="csr"), _tri(m)
    return (sp.kron(one, t) + eps * sp.kron(t, one)).tocsr()


def _varcoef(m: int, rng: np.random.Generator, contrast: float) -> sp.csr_matrix:
    """-div(a grad u) on an m x m grid, log a a smooth random field of the given contrast."""
    k = np.arange(1, 4)
    field = np.zeros((m + 1, m + 1))
    g = np.linspace(0, 1, m + 1)
    X, Y = np.meshgrid(g, g, indexing="ij")
    for i in k:
        for j in k:
            field += (
                rng.normal()
                / (i * i + j * j)
                * np.sin(np.pi * i * X + rng.uniform(0, 6))
                * np.cos(np.pi * j * Y)
            )
    field *= contrast / max(np.abs(field).max(), 1e-12)
    a = np.exp(field)
    n = m * m
    rows, cols, vals = [], [], []
    for ix in range(m):
        for iy in range(m):
            r = ix * m + iy
            ax = (a[ix, iy + 1], a[ix + 1, iy + 1])  # faces in x
            ay = (a[ix + 1, iy], a[ix + 1, iy + 1])  # faces in y
            rows.append(r)
            cols.append(r)
            vals.append(sum(ax) + sum(ay))
            for dx, dy, w in ((-1, 0, ax[0]), (1, 0, ax[1]), (0, -1, ay[0]), (0, 1, ay[1])):
                jx, jy = ix + dx, iy + dy
                if 0 <= jx < m and 0 <= jy < m:
                    rows.append(r)
                    cols.append(jx * m + jy)
                    vals.append(-w)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def _contexts(f: Family, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """T values in [lo, hi] (log-uniform), i.i.d. or drifting from one end to the other."""
    if not f.wide:  # a narrow band somewhere in the range
        span = (np.log(hi) - np.log(lo)) * 0.25
        start = rng.uniform(np.log(lo), np.log(hi) - span)
        lo, hi = float(np.exp(start)), float(np.exp(start + span))
    if f.drift:
        s = np.linspace(0.0, 1.0, f.T)
        path = np.log(hi) + (np.log(lo) - np.log(hi)) * s**1.5
        return np.exp(path + rng.normal(0.0, 0.05, f.T))
    return np.exp(rng.uniform(np.log(lo), np.log(hi), f.T))


def _solve_all(
    A: sp.csr_matrix, b: np.ndarray, arms: list[tuple[str, float]], x0: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Iterations (work units for configs) of every arm, and the last SOR/PCG solution."""
    P = prepare(A)
    out = np.zeros(len(arms))
    x = None
    for k, (method, w) in enumerate(arms):
        if method == "sor":
            res = sor(P, b, w, 1e-8, MAX_ITERS, x0)
            out[k] = res.iterations if res.converged else MAX_ITERS
        else:  # an SSOR-PCG iteration costs about two SOR sweeps and a product
            res = ssor_pcg(P, b, w, 1e-8, MAX_ITERS, x0)
            out[k] = (res.iterations if res.converged else MAX_ITERS) * (
                2.5 if any(m == "sor" for m, _ in arms) else 1.0
            )
        x = res.x
    return out, x


def arm_list(f: Family, rng: np.random.Generator) -> list[tuple[str, float]]:
    if f.arms == "configs":
        sor_w = np.linspace(1.0, 1.95, (f.K + 1) // 2)
        pcg_w = np.linspace(0.8, 1.8, f.K - len(sor_w))
        return [("sor", float(w)) for w in sor_w] + [("ssor-pcg", float(w)) for w in pcg_w]
    lo = 1.0 if f.solver == "sor" else 0.6
    return [(f.solver, float(w)) for w in np.linspace(lo, 1.98, f.K)]


def build(f: Family) -> CostTable:
    """The family's full-information table (deterministic in the seed)."""
    rng = np.random.default_rng(f.seed)
    arms = arm_list(f, rng)
    order = np.arange(len(arms))
    if f.arms in ("shuffled", "configs"):
        order = rng.permutation(len(arms))  # an order that carries no meaning
    arms = [arms[i] for i in order]
    lo = 1e-4 if f.singular else 0.01
    shifts = _contexts(f, rng, lo, 0.5)
    sizes = rng.choice([f.m - 2, f.m, f.m + 2], size=f.T) if f.size_feature else np.full(f.T, f.m)
    feats: list[np.ndarray] = []
    costs = np.zeros((f.T, len(arms)))
    if f.operator == "heat2d":
        m = f.m
        L = _lap(m, 2) * (m + 1) ** 2
        eye = sp.identity(m * m, format="csr")
        diff = _contexts(f, rng, 0.01 if not f.singular else 0.001, 10.0)
        u = np.zeros(m * m)
        dt = 1e-3
        g = np.arange(1, m + 1) / (m + 1)
        X, Y = np.meshgrid(g, g, indexing="ij")
        for t in range(f.T):
            s = 0.5 * dt * diff[t]
            src = np.exp(-((X - 0.5 - 0.2 * np.cos(t / 7)) ** 2 + (Y - 0.5) ** 2) / 0.01).ravel()
            b = u - s * (L @ u) + dt * 100.0 * src
            costs[t], x = _solve_all((eye + s * L).tocsr(), b, arms, u)
            u = x if x is not None else u
        feats.append(diff)
    else:
        eps = np.exp(rng.uniform(np.log(0.05), 0.0, f.T)) if f.operator == "aniso2d" else None
        contrast = rng.uniform(0.5, 3.0, f.T) if f.operator == "varcoef2d" else None
        for t in range(f.T):
            m = int(sizes[t])
            if f.operator == "laplace3d":
                A = _lap(m, 3)
            elif f.operator == "aniso2d":
                assert eps is not None
                A = _aniso(m, float(eps[t]))
            elif f.operator == "varcoef2d":
                assert contrast is not None
                A = _varcoef(m, rng, float(contrast[t]))
            else:
                A = _lap(m, 2)
            n = A.shape[0]
            A = (A + shifts[t] * sp.diags(A.diagonal())).tocsr()
            b = paper_rhs(n, rng)
            if all(a[0] == "sor" for a in arms):  # the batched compiled path
                costs[t] = sor_iterations(
                    A,
                    np.zeros(len(arms)),
                    np.array([w for _, w in arms]),
                    np.repeat(b[:, None], len(arms), axis=1),
                    max_iters=MAX_ITERS,
                )
            else:
                costs[t], _x = _solve_all(A, b, arms, None)
        feats.append(shifts)
        if eps is not None:
            feats.append(eps)
        if contrast is not None:
            feats.append(contrast)  # explains part: the field itself is new every time
    if f.size_feature:
        feats.append(sizes.astype(float))
    feats = feats[:3]
    if f.noise:
        costs = costs * np.exp(rng.normal(0.0, f.noise, costs.shape))
    # ordered and shuffled: the omegas (listed in order, or not); configurations: indices,
    # replayed as unordered (the policy gets no positions)
    positions = (
        np.arange(len(arms), dtype=float) if f.arms == "configs" else np.array([w for _, w in arms])
    )
    return CostTable(
        np.stack(feats, axis=1),
        positions,
        np.maximum(costs, 1.0),
        context_names=[f"x{i}" for i in range(len(feats))],
        arm_names=[f"{mth}:{w:.3f}" for mth, w in arms],
    )


def table(seed: int, out: Path) -> tuple[Family, CostTable]:
    f = draw(seed)
    path = out / f"zoo_{seed}.npz"
    if path.exists():
        return f, load_table(path)
    tab = build(f)
    out.mkdir(parents=True, exist_ok=True)
    tab.save(path)
    return f, tab


def knn_full(tab: CostTable, k: int = 10) -> np.ndarray:
    """Full-information nearest neighbours: each instance takes the arm with the least mean
    cost over the k most similar earlier instances (contexts scaled by their range so far)."""
    chosen = np.zeros(tab.T, dtype=int)
    X = tab.contexts
    for t in range(tab.T):
        if t == 0:
            chosen[t] = int(np.argmin(np.median(tab.costs, axis=0)))  # no data: any arm
            continue
        past = X[:t]
        span = np.maximum(past.max(axis=0) - past.min(axis=0), 1e-12)
        d = np.abs((past - X[t]) / span).sum(axis=1)
        near = np.argsort(d)[:k]
        chosen[t] = int(np.argmin(np.log(tab.costs[near]).mean(axis=0)))
    return tab.costs[np.arange(tab.T), chosen]


def evaluate(tab: CostTable, policy: str, unordered: bool, seed: int = 0) -> np.ndarray:
    if policy == "knn-full":
        return knn_full(tab)
    if policy == "best-fixed":
        return tab.costs[:, int(np.argmin(tab.costs.mean(axis=0)))]
    return replay_once(tab, policy, seed=seed, unordered=unordered).costs


def summary(rows: list[dict[str, Any]], policy: str) -> dict[str, Any]:
    r = np.array([x[policy]["ratio_to_oracle"] for x in rows])
    first = np.array([x[policy]["first_10pct"] for x in rows])
    fixed = np.array([x[policy]["ratio_to_best_fixed"] for x in rows])
    return {
        "median": float(np.median(r)),
        "p90": float(np.percentile(r, 90)),
        "worst": float(r.max()),
        "first_10pct_median": float(np.median(first)),
        "vs_best_fixed_median": float(np.median(fixed)),
        "vs_best_fixed_worst": float(fixed.max()),
        "families_worse_than_best_fixed_by_2pct": int((fixed > 1.02).sum()),
    }


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="100-199", help="zoo seeds: 100-199 (report), 0-49 (design)")
    ap.add_argument("--policies", default="default,chebcb,best-fixed,knn-full")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "zoo")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 report seeds, 2 policies")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.policies = "100-101", "default,best-fixed"
    seeds = parse_seeds(args.seeds)
    if set(seeds) & set(DESIGN_SEEDS) and set(seeds) & set(REPORT_SEEDS):
        ap.error("design (0-49) and report (100-199) seeds are never mixed in one report")
    policies = args.policies.split(",")
    rows = []
    t0 = time.time()
    for s in seeds:
        f, tab = table(s, args.out)
        oracle = tab.costs.min(axis=1)
        fixed = tab.costs.mean(axis=0).min()
        n10 = max(1, tab.T // 10)
        row: dict[str, Any] = {"seed": s, "family": f.describe()}
        for p in policies:
            c = evaluate(tab, p, unordered=f.arms == "configs")
            row[p] = {
                "ratio_to_oracle": float(c.mean() / oracle.mean()),
                "first_10pct": float(c[:n10].mean() / oracle[:n10].mean()),
                "ratio_to_best_fixed": float(c.mean() / fixed),
            }
        rows.append(row)
        if not args.json:
            cells = "  ".join(f"{p} {row[p]['ratio_to_oracle']:.3f}" for p in policies)
            print(f"seed {s:3d} ({time.time() - t0:5.0f} s) {f.describe():60s} {cells}", flush=True)
    result: dict[str, Any] = {
        "seeds": seeds,
        "policies": {p: summary(rows, p) for p in policies},
        "rows": rows,
    }
    if not args.json:
        print(
            f"\n{'policy':12s} {'median':>7s} {'p90':>7s} {'worst':>7s} {'first10%':>9s} "
            f"{'/fixed':>7s} {'/fixed worst':>12s} {'>2% worse':>9s}"
        )
        for p, v in result["policies"].items():
            print(
                f"{p:12s} {v['median']:7.3f} {v['p90']:7.3f} {v['worst']:7.3f} "
                f"{v['first_10pct_median']:9.3f} {v['vs_best_fixed_median']:7.3f} "
                f"{v['vs_best_fixed_worst']:12.3f} {v['families_worse_than_best_fixed_by_2pct']:9d}"
            )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
