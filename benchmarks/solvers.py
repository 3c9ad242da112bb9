"""Solver selection (the ``krylov`` kind) against the alternatives, on sequences of systems.

Families (each a sequence whose systems vary; consecutive steps of a family reuse one
matrix now and then, as a time-stepping code does, so cached set-ups count):

* ``poisson2d``: 5-point Laplacian, a relative shift drawn per system;
* ``poisson3d``: 7-point Laplacian, the same;
* ``aniso``: anisotropic diffusion, eps in [1e-3, 1] per system;
* ``contrast``: high-contrast variable diffusion, contrast 10..1e5 and a fresh coefficient
  field per system;
* ``elasticity``: pyamg's gallery linear elasticity (plane strain), Poisson ratio varied;
* ``convdiff``: upwinded convection-diffusion (non-symmetric; its own default arms).

Every system is solved by every configuration of the kind's default arms (wall time, set-up
included, each configuration's set-up cached per matrix as the worker caches it: a repeated
matrix is the same system, and finds its set-ups held), each under
the kind's safety (stopped at BUDGET x the fallback configuration's time, or when it fails
to converge, and then the fallback solves: both paid): a full-information table. On it,
side by side: the per-instance oracle, the best fixed configuration in hindsight,
banditq's default policy as a krylov campaign gets it (learning included: it sees only the
cost of what it chose, with the system's features as its context; its default fallback
budget applied: an arm past 2x the fallback's expected time is stopped and the fallback
solves, both paid; its history prior from ``tasks/kinds/krylov_history.json``; each time
learnt in products of the system's matrix with a vector, the history's level of the
fallback setting the model's level and its budgets in products from the first decision,
converted with each system's measured product time), the same learning seconds with the
level for the first budgets only ("default, seconds": the default before), the same policy
with the fallback solving the first system instead ("fallback first"), the same with the
table's own family left out of that history ("prior w/o family": a family the history
never saw), the same told the sequence's
length (``policy_config.horizon``: "told horizon"), the same model deciding by Thompson
sampling ("thompson": ``shared-ts``, the default before ``shared-kg``), the default
without the prior, without the budget, Tsallis-INF over the same arms without context and
with the same budget (PCGBandit's algorithm and safety), and, timed directly,
``pyamg.solve(A, b)`` as users call it (a new hierarchy per call) and scipy's default
``gmres`` (restart 20; at most 100 restarts here, where its default of 10 n iterations took
minutes). The ``mixed`` stream interleaves the SPD
families. Figures are totals in seconds over each sequence.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.offline.replay import replay_once  # noqa: E402
from app.offline.tables import CostTable, load_table  # noqa: E402
from app.policies.fallback import fallback_arm  # noqa: E402
from tasks.kinds.krylov import (  # noqa: E402
    DEFAULT_FEATURES,
    DEFAULT_NONSYMMETRIC,
    DEFAULT_SPD,
    KrylovKind,
    safe_arm,
)
from tasks.kinds.krylov_features import matrix_features  # noqa: E402
from tasks.kinds.krylov_prior import campaign_prior  # noqa: E402
from tasks.solvers.generators import build, validate  # noqa: E402
from workers.kinds.krylov import matvec_seconds, run_krylov  # noqa: E402
from workers.solvers.cache import process_cache  # noqa: E402

FAMILIES = ("poisson2d", "poisson3d", "aniso", "contrast", "elasticity", "convdiff")
#: the context a krylov campaign gets by default (setup_cached: the matrix repeats the
#: previous step's, whose configurations' set-ups the table's worker holds)
FEATURES = DEFAULT_FEATURES
TOL = 1e-8
#: the table's safety: an arm is stopped once it has taken this many times the fallback
#: configuration's time (a policy's own, smaller, budget is applied in the replay)
BUDGET = 5.0
#: the fallback configurations (SPD, non-symmetric) a krylov campaign gets by default: CG
#: with smoothed-aggregation AMG as pyamg sets it up by default, GMRES with ILU(1e-3)
FALLBACK = (safe_arm(DEFAULT_SPD), safe_arm(DEFAULT_NONSYMMETRIC))
#: the policy ``policy="default"`` gives a krylov campaign
DEFAULT = KrylovKind.default_policy or "default"
#: the guard's tolerance: the issue's own bound on a family's total against its fallback
GUARD_TOLERANCE = 0.10
assert FALLBACK[0] is not None and FALLBACK[1] is not None


def convdiff(m: int, peclet: float) -> sp.csr_matrix:
    one = np.ones(m)
    T = sp.diags([-(1 + peclet) * one[:-1], (4 + peclet) * one, -one[:-1]], [-1, 0, 1])
    S = sp.diags([-one[:-1], -one[:-1]], [-1, 1])
    return sp.csr_matrix(sp.kron(sp.eye(m), T) + sp.kron(S, sp.eye(m)))


def systems(family: str, T: int, n: int, rng: np.random.Generator) -> list[sp.csr_matrix]:
    """T matrices of about n unknowns; a matrix is reused for the next step with
    probability 0.3 (a time-stepped operator)."""
    m2, m3 = int(round(n**0.5)), int(round(n ** (1 / 3)))
    out: list[sp.csr_matrix] = []
    for _t in range(T):
        if out and rng.random() < 0.3:
            out.append(out[-1])
            continue
        if family == "poisson2d":
            A, _b = generated({"generator": "laplace2d", "m": m2, "rel_shift": rng.uniform(0, 20)})
        elif family == "poisson3d":
            A, _b = generated({"generator": "laplace3d", "m": m3, "rel_shift": rng.uniform(0, 20)})
        elif family == "aniso":
            A, _b = generated(
                {"generator": "anisotropic2d", "m": m2, "eps": 10 ** rng.uniform(-3, 0)}
            )
        elif family == "contrast":
            A, _b = generated(
                {
                    "generator": "variable_diffusion2d",
                    "m": m2,
                    "contrast": 10 ** rng.uniform(1, 5),
                    "blocks": 8,
                    "coeff_seed": int(rng.integers(1 << 30)),
                }
            )
        elif family == "elasticity":
            import pyamg

            A, _B = pyamg.gallery.linear_elasticity(
                (int((n / 2) ** 0.5), int((n / 2) ** 0.5)), nu=rng.uniform(0.1, 0.45)
            )
        else:
            A = convdiff(m2, rng.uniform(0.5, 50))
        out.append(sp.csr_matrix(A))
    return out


def generated(spec: dict[str, Any]) -> tuple[sp.csr_matrix, np.ndarray]:
    return build(validate(spec))  # type: ignore[no-any-return]


def spec_of(A: sp.csr_matrix, b: np.ndarray) -> dict[str, Any]:
    return {
        "system": {
            "n": A.shape[0],
            "indptr": A.indptr.tolist(),
            "indices": A.indices.tolist(),
            "data": A.data.tolist(),
            "b": b.tolist(),
        },
        "tol": TOL,
        "max_iters": 5000,
    }


def table(family: str, T: int, n: int, seed: int) -> tuple[CostTable, dict[str, Any]]:
    """The full-information table of one family, and the direct baselines' totals."""
    rng = np.random.default_rng(seed)
    arms = DEFAULT_NONSYMMETRIC if family == "convdiff" else DEFAULT_SPD
    mats = systems(family, T, n, rng)
    costs = np.zeros((T, len(arms)))
    ctx = np.zeros((T, len(FEATURES)))
    direct: dict[str, Any] = {"pyamg.solve": 0.0, "scipy gmres": 0.0, "matvec_s": []}
    fb = FALLBACK[1] if family == "convdiff" else FALLBACK[0]
    assert fb is not None
    ref = arms[fb]
    b = np.zeros(0)
    for t, A in enumerate(mats):
        reused = t > 0 and A is mats[t - 1]
        if not reused:  # nothing earlier can be found again: free its set-ups
            process_cache().clear()
        # a reused matrix is the same system to the worker's cache (its set-ups are held,
        # as a stored matrix's are); a new one's right-hand side is drawn
        b = b if reused else rng.standard_normal(A.shape[0])
        spec = spec_of(A, b)
        # a decision's budget before any result is in products of the system's matrix with
        # a vector, timed by the worker as here (workers.kinds.krylov.matvec_seconds)
        direct["matvec_s"].append(matvec_seconds(A))
        f = {**matrix_features(A), "setup_cached": float(reused)}
        ctx[t] = [f.get(k, 0.0) for k in FEATURES]
        with contextlib.redirect_stdout(io.StringIO()):  # pyamg prints its warnings
            base = run_krylov(spec, ref, {"cost": "time"}).cost
            # as the kind's safety runs them: an arm past BUDGET x the fallback's time, or
            # unconverged, is stopped and the fallback solves (both paid)
            opts = {"cost": "time", "budget": BUDGET * base, "fallback_arm": ref}
            for i, arm in enumerate(arms):
                if i == fb:  # its run above, set-up included (a second would find it held)
                    costs[t, i] = base
                    continue
                try:
                    costs[t, i] = run_krylov(spec, arm, opts).cost
                except Exception:  # a set-up that fails (a singular coarse level): ditto
                    costs[t, i] = (BUDGET + 1.0) * base
        with contextlib.redirect_stdout(io.StringIO()):
            direct["pyamg.solve"] += _timed(lambda A=A, b=b: _pyamg(A, b))
        direct["scipy gmres"] += _timed(
            lambda A=A, b=b: spla.gmres(A, b, rtol=TOL, atol=0.0, maxiter=100)
        )
    labels = [",".join(f"{k}={v}" for k, v in a.items()) for a in arms]
    return CostTable(ctx, np.arange(len(arms), dtype=float), costs, list(FEATURES), labels), direct


def cached_table(
    folder: str | None, family: str, T: int, n: int, seed: int
) -> tuple[CostTable, dict[str, Any]]:
    """:func:`table`, kept in ``folder`` (when given) under its parameters and read from
    there when present: policies can be compared again on the same measured table."""
    if folder is None:
        return table(family, T, n, seed)
    stem = Path(folder) / f"{family}-T{T}-n{n}-seed{seed}"
    if stem.with_suffix(".npz").exists():
        kept = load_table(stem.with_suffix(".npz"))
        direct = json.loads(stem.with_suffix(".json").read_text())
        # else measured for another context, or before products were timed: again
        if kept.context_names == list(FEATURES) and "matvec_s" in direct:
            return kept, direct
    tab, direct = table(family, T, n, seed)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tab.save(stem.with_suffix(".npz"))
    stem.with_suffix(".json").write_text(json.dumps(direct))
    return tab, direct


def _pyamg(A: sp.csr_matrix, b: np.ndarray) -> None:
    import pyamg

    pyamg.solve(A, b, tol=TOL, verb=False)


def _timed(f: Any) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def compare(
    tab: CostTable,
    direct: dict[str, Any],
    seed: int,
    arms: list[dict[str, Any]],
    family: str | None = None,
) -> dict[str, float | None]:
    """Every policy's total on ``tab``; ``family``: the one the table holds (its history is
    left out of the prior for the "prior without this family" column)."""

    # the policy_config a krylov campaign over these arms gets (its fallback, budget, prior,
    # level; costs learnt in products), and with a policy or an opt-out of its own
    def campaign(policy: str, given: dict[str, Any]) -> dict[str, Any]:
        return KrylovKind().prepare_campaign(arms, {}, policy, given, list(FEATURES))[2]

    config = campaign(DEFAULT, {})
    fb = fallback_arm(config)
    assert fb is not None
    mv = np.asarray(direct["matvec_s"], float)
    # the same without the fallback's level: the fallback solves first
    unlevelled = {**config, "fallback": {**config["fallback"], "level": None}}

    def run(policy: str, cfg: dict[str, Any] | None, table: CostTable = tab) -> float:
        out = replay_once(table, policy, seed=seed, config=cfg, unordered=True, matvec_seconds=mv)
        return float(out.costs.sum())

    others = [family] if family else []
    loo, loo_level = campaign_prior(arms, list(FEATURES), fb, exclude=others)
    held_out = (
        run(
            DEFAULT,
            {**config, "prior": loo, "fallback": {**config["fallback"], "level": loo_level}},
        )
        if family and loo is not None and loo_level is not None
        else None
    )
    results = {
        "banditq default": run(DEFAULT, config),
        # the previous default: learning seconds, the level for the first budgets only
        "default, seconds": run(DEFAULT, campaign(DEFAULT, {"cost_unit": None})),
        "fallback first": run(DEFAULT, unlevelled),
        "prior w/o family": held_out,
        # a campaign that says how many systems it will have (a simulation's time steps)
        "told horizon": run(DEFAULT, {**config, "horizon": tab.T}),
        # the previous default: the same model, prior and budget, Thompson sampling
        "thompson": run("shared-ts", config),
        # a campaign that opts out of the prior (and so of the level)
        "default, no prior": run(DEFAULT, campaign(DEFAULT, {"prior": None})),
        "default, no budget": run(DEFAULT, {**config, "fallback": None}),
        "banditq guarded": run(
            DEFAULT, {**config, "guard": {"baseline_arm": fb, "tolerance": GUARD_TOLERANCE}}
        ),
        # what "default" gives a campaign of a kind without its own (lin-ts at five features)
        "generic default": run("default", None),
        # PCGBandit's algorithm, with the same fallback and budget (PCGBandit has one; no
        # prior, no level)
        "tsallis-inf": run(
            "tsallis-inf",
            campaign("tsallis-inf", {}),
            CostTable(np.zeros((tab.T, 0)), tab.arms, tab.costs),
        ),
    }
    return {
        "oracle": float(tab.costs.min(axis=1).sum()),
        "best fixed": float(tab.costs.sum(axis=0).min()),
        "fallback alone": float(tab.costs[:, fb].sum()),
        **results,
        **{k: direct[k] for k in ("pyamg.solve", "scipy gmres")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 systems of ~1,600 unknowns a family")
    ap.add_argument("--systems", type=int, default=40, help="systems per family")
    ap.add_argument("--n", type=int, default=10_000, help="unknowns per system (about)")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    ap.add_argument(
        "--tables",
        default=None,
        help="folder to keep each family's measured table in (and read it from next time)",
    )
    ap.add_argument(
        "--seed",
        type=int,
        default=100,
        help="the systems' seed (family k draws from seed + k): report on seeds not designed on",
    )
    ap.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help="comma-separated subset (the mixed stream interleaves the SPD ones given)",
    )
    args = ap.parse_args()
    T, n = (4, 1600) if args.quick else (args.systems, args.n)
    families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        ap.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    res: dict[str, Any] = {"systems_per_family": T, "n": n, "families": {}}
    tables = {}
    t0 = time.perf_counter()
    for fam in families:
        k = FAMILIES.index(fam)  # a family's seeds do not depend on which others run
        tab, direct = cached_table(args.tables, fam, T, n, seed=args.seed + k)
        tables[fam] = (tab, direct)
        arms = DEFAULT_NONSYMMETRIC if fam == "convdiff" else DEFAULT_SPD
        res["families"][fam] = compare(tab, direct, seed=k, arms=arms, family=fam)
        print(f"  {fam}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    spd = [f for f in families if f != "convdiff"]  # one arm set: the SPD families interleave
    if spd:  # a run of convdiff alone has no mixed stream
        order = [(f, t) for t in range(T) for f in spd]
        mixed = CostTable(
            np.stack([tables[f][0].contexts[t] for f, t in order]),
            tables[spd[0]][0].arms,
            np.stack([tables[f][0].costs[t] for f, t in order]),
            arm_names=tables[spd[0]][0].arm_names,
        )
        direct = {k: sum(tables[f][1][k] for f in spd) for k in ("pyamg.solve", "scipy gmres")}
        direct["matvec_s"] = [tables[f][1]["matvec_s"][t] for f, t in order]
        res["families"]["mixed (SPD)"] = compare(mixed, direct, seed=99, arms=DEFAULT_SPD)
    cols = [
        "oracle",
        "best fixed",
        "fallback alone",
        "banditq default",
        "default, seconds",
        "fallback first",
        "prior w/o family",
        "told horizon",
        "thompson",
        "default, no prior",
        "default, no budget",
        "banditq guarded",
        "generic default",
        "tsallis-inf",
        "pyamg.solve",
        "scipy gmres",
    ]
    print(f"{'family':14s} " + " ".join(f"{c:>15s}" for c in cols) + "   (seconds, totals)")
    for fam, r in res["families"].items():
        print(
            f"{fam:14s} "
            + " ".join("-".rjust(15) if r[c] is None else f"{r[c]:15.3f}" for c in cols)
        )
    m = res["families"].get("mixed (SPD)")
    mixed_cols = (
        "banditq default",
        "told horizon",
        "thompson",
        "default, no budget",
        "banditq guarded",
        "generic default",
    )
    for col in mixed_cols if m is not None else ():
        print(
            f"mixed, {col}: / oracle {m[col] / m['oracle']:.2f}x, / best fixed "
            f"{m[col] / m['best fixed']:.2f}x, / pyamg.solve {m[col] / m['pyamg.solve']:.2f}x"
        )
    res["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
