"""Do the report's 95% intervals cover the truth? Logged campaigns whose every
counterfactual is known (full-information cost tables), run by the default policy, then
estimated from the log alone as ``banditq report`` does.

For each campaign (100-300 instances, drawn per seed) the estimand is the baseline arm's
mean cost over the campaign's instances (the speed-up's numerator; its denominator, the
campaign's own mean cost, is known exactly). Side by side:

* ``normal``: the doubly robust mean with 1.96 sd / sqrt(n) (the report before);
* ``bootstrap``: the same mean, the interval a bootstrap over rounds with the outcome model
  refitted in every replicate, and no estimate at all when the arm was logged fewer than
  MIN_PLAYS times ("not enough data": the report now).

Two logging set-ups: the default policy alone (a good policy soon stops playing a bad
baseline), and the same with a 5% holdout on the baseline (``policy_config={"holdout":
{"arm": 0, "share": 0.05}}``). Design families (looked at while choosing the method):
``synth`` and ``relax-low``, seeds 0..; held out (never looked at while designing):
``relax-high``, ``aniso2d`` and ``synth2``, seeds 1000... Prints a table; --json adds one
JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from app.offline.replay import replay_once  # noqa: E402
from app.offline.tables import CostTable, relax_table  # noqa: E402
from app.report.estimates import estimate  # noqa: E402

DESIGN = ("synth", "relax-low")
HELD_OUT = ("relax-high", "aniso2d", "synth2")


def synthetic(T: int, seed: int, d: int, noise: float) -> CostTable:
    """Log-costs V-shaped in omega around an optimum that moves with the context, with
    multiplicative noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, size=(T, d))
    arms = np.linspace(1.0, 1.9, 10)
    best = 1.2 + 0.6 * X.mean(axis=1)
    logc = 3.0 + 4.0 * np.abs(arms[None, :] - best[:, None]) + 0.8 * X[:, :1]
    return CostTable(X, arms, np.exp(logc + noise * rng.standard_normal((T, len(arms)))))


def table(family: str, T: int, seed: int) -> CostTable:
    if family == "synth":
        return synthetic(T, seed, 1, 0.3)
    if family == "synth2":
        return synthetic(T, seed, 2, 0.6)
    if family.startswith("relax-"):
        return relax_table(family.split("-", 1)[1], T=T, seed=seed)
    from families import family as sor_family

    return sor_family(family, T, seed)


def campaign(family: str, seed: int, holdout: bool) -> dict[str, Any]:
    T = int(np.random.default_rng(seed + 7919).integers(100, 301))
    tab = table(family, T, seed)
    config = {"holdout": {"arm": 0, "share": 0.05}} if holdout else None
    run = replay_once(tab, "default", seed=seed, config=config)
    arm = run.chosen.astype(np.int64)
    cf = estimate(tab.contexts, arm, run.propensities, run.costs, tab.K)
    truth = float(tab.costs[:, 0].mean())
    terms = cf.terms[:, 0]
    half = 1.96 * float(terms.std(ddof=1)) / np.sqrt(len(terms))
    mean = float(terms.mean())
    lo, hi = cf.ci(0)
    return {
        "T": T,
        "plays": int(cf.plays[0]) if cf.plays is not None else 0,
        "truth": truth,
        "normal": [mean - half, mean + half],
        "bootstrap": None if not cf.enough(0) else [lo, hi],
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def covered(iv: list[float], t: float) -> bool:
        return iv[0] <= t <= iv[1]

    given = [r for r in rows if r["bootstrap"] is not None]
    return {
        "campaigns": len(rows),
        "normal_coverage": float(np.mean([covered(r["normal"], r["truth"]) for r in rows])),
        "bootstrap_estimated": len(given),
        "bootstrap_coverage": float(np.mean([covered(r["bootstrap"], r["truth"]) for r in given]))
        if given
        else None,
        "bootstrap_median_rel_width": float(
            np.median([(r["bootstrap"][1] - r["bootstrap"][0]) / r["truth"] for r in given])
        )
        if given
        else None,
        "median_plays": float(np.median([r["plays"] for r in rows])),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4 seeds of synth (~15 s)")
    ap.add_argument("--seeds", type=int, default=50, help="campaigns per family and set-up")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    args = ap.parse_args()
    groups = [("design", f, 0) for f in DESIGN] + [("held-out", f, 1000) for f in HELD_OUT]
    n = args.seeds
    if args.quick:
        groups, n = [("design", "synth", 0)], 4
    t0 = time.perf_counter()
    out: dict[str, Any] = {"seeds": n, "families": {}}
    print(
        f"{'family':12s} {'set':9s} {'logging':12s} {'normal cov':>10s} {'boot cov':>9s} "
        f"{'estimated':>9s} {'rel width':>9s} {'plays':>6s}"
    )
    for group, fam, base in groups:
        for holdout in (False, True):
            rows = [campaign(fam, base + s, holdout) for s in range(n)]
            res = summarize(rows)
            label = "holdout 5%" if holdout else "policy only"
            out["families"].setdefault(fam, {"set": group})[label] = res
            bc, bw = res["bootstrap_coverage"], res["bootstrap_median_rel_width"]
            print(
                f"{fam:12s} {group:9s} {label:12s} {res['normal_coverage']:10.2f} "
                f"{'-' if bc is None else f'{bc:.2f}':>9s} "
                f"{res['bootstrap_estimated']:>4d}/{n:<4d} "
                f"{'-' if bw is None else f'{bw:.2f}':>9s} {res['median_plays']:6.0f}",
                flush=True,
            )
    out["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
