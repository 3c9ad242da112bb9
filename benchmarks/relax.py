"""Benchmark: policies on the "Learning to Relax" tables (Khodak et al., ICLR 2024).

Generates the paper's low- and high-variance SOR cost tables (T = 3000, fixed seeds; cached
under --out), replays every policy in file order (the policy sees only its arm's cost), and
prints one table: mean iterations, ratio to the per-instance oracle, ratio to the best fixed
omega, and the ratio over the first 300 instances. Also measures warm start (the default
policy pre-trained on an earlier campaign's logged results from the same family) and writes
relax.json and relax_regret.png. With --json the last stdout line is the JSON object.
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

from app.offline.replay import ReplayRun, replay_once, summarize  # noqa: E402
from app.offline.tables import CostTable, load_table, relax_table  # noqa: E402
from app.policies.registry import DEFAULT_POLICY  # noqa: E402

SEEDS = {"low": 1, "high": 2}
WARM_SEEDS = {"low": 101, "high": 102}
POLICIES = [
    "random",
    "epsilon-greedy",
    "ucb1",
    "thompson",
    "tsallis-inf",
    "chebcb",
    "squarecb",
    "linucb",
    "lin-ts",
    "smooth-ts",
]


def get_table(out: Path, variance: str, seed: int, T: int) -> CostTable:
    path = out / f"relax_{variance}_T{T}_s{seed}.npz"
    if path.exists():
        return load_table(path)
    t0 = time.time()
    print(
        f"generating {variance}-variance table (T={T}, seed={seed}) ...",
        file=sys.stderr,
        flush=True,
    )
    tab = relax_table(variance, T=T, seed=seed)
    tab.save(path)
    print(f"  done in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return tab


def fixed_run(tab: CostTable, arm: int, name: str) -> ReplayRun:
    c = tab.costs[:, arm]
    return ReplayRun(name, np.full(tab.T, arm), c, np.ones(tab.T), 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--T", type=int, default=3000, help="instances per table (paper: 3000)")
    ap.add_argument("--repeats", type=int, default=3, help="policy seeds per cell")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in seconds (T=60, one repeat, the default policy, no extra seeds)",
    )
    ap.add_argument(
        "--table-seeds",
        default="0,1,2,3,4",
        help="also the default policy and chebcb on these tables of each setting (mean and "
        "worst seed; empty: skip)",
    )
    args = ap.parse_args()
    if args.quick:
        args.T, args.repeats, args.policies, args.table_seeds = 60, 1, "default", ""
    args.out.mkdir(parents=True, exist_ok=True)
    # "default" is the default policy by its name; the summary below always needs it
    policies = [DEFAULT_POLICY if p == "default" else p for p in args.policies.split(",") if p]
    if DEFAULT_POLICY not in policies:
        policies.append(DEFAULT_POLICY)
    results: dict[str, dict[str, dict[str, float]]] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    first = max(1, args.T // 10)
    for variance in ("low", "high"):
        tab = get_table(args.out, variance, SEEDS[variance], args.T)
        oracle = tab.costs.min(axis=1)
        best_arm = int(np.argmin(tab.costs.mean(axis=0)))
        cells: dict[str, dict[str, float]] = {}
        curves[variance] = {}
        for label, arm in (("omega=1", 0), ("best-fixed (hindsight)", best_arm)):
            cells[label] = summarize(tab, [fixed_run(tab, arm, label)])
        for pol in policies:
            runs = [replay_once(tab, pol, seed=s) for s in range(args.repeats)]
            cells[pol] = summarize(tab, runs)
            curves[variance][pol] = np.mean([np.cumsum(r.costs - oracle) for r in runs], axis=0)
            print(
                f"  {variance:4} {pol:15} {cells[pol]['ratio_to_oracle']:.4f}",
                file=sys.stderr,
                flush=True,
            )
        warm_tab = get_table(args.out, variance, WARM_SEEDS[variance], max(300, args.T // 3))
        warm = [
            replay_once(tab, DEFAULT_POLICY, seed=s, warm=warm_tab) for s in range(args.repeats)
        ]
        cells[f"{DEFAULT_POLICY}+warm"] = summarize(tab, warm)
        curves[variance][f"{DEFAULT_POLICY}+warm"] = np.mean(
            [np.cumsum(r.costs - oracle) for r in warm], axis=0
        )
        results[variance] = cells

    header = (
        f"{'policy':24} | {'low: iters':>10} {'/oracle':>8} {'/best':>7} {'first10%':>9} | "
        f"{'high: iters':>11} {'/oracle':>8} {'/best':>7} {'first10%':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in results["low"]:
        lo, hi = results["low"][name], results["high"][name]
        print(
            f"{name:24} | {lo['mean_cost']:10.1f} {lo['ratio_to_oracle']:8.3f} "
            f"{lo['ratio_to_best_fixed']:7.3f} {lo['first_10pct_ratio']:9.3f} | "
            f"{hi['mean_cost']:11.1f} {hi['ratio_to_oracle']:8.3f} "
            f"{hi['ratio_to_best_fixed']:7.3f} {hi['first_10pct_ratio']:9.3f}"
        )
    d = DEFAULT_POLICY
    summary = {
        "T": args.T,
        "repeats": args.repeats,
        "first_n": first,
        "default_policy": d,
        "default_ratio_low": results["low"][d]["ratio_to_oracle"],
        "default_ratio_high": results["high"][d]["ratio_to_oracle"],
        "target_1_05_met": bool(
            max(results["low"][d]["ratio_to_oracle"], results["high"][d]["ratio_to_oracle"]) <= 1.05
        ),
        "warm_first10_low": results["low"][f"{d}+warm"]["first_10pct_ratio"],
        "cold_first10_low": results["low"][d]["first_10pct_ratio"],
        "warm_first10_high": results["high"][f"{d}+warm"]["first_10pct_ratio"],
        "cold_first10_high": results["high"][d]["first_10pct_ratio"],
        "results": results,
    }
    print(
        f"\ndefault = {d}: {summary['default_ratio_low']:.3f}x (low), "
        f"{summary['default_ratio_high']:.3f}x (high) the per-instance oracle; target 1.05x "
        f"{'MET' if summary['target_1_05_met'] else 'NOT met'}"
    )
    print(
        f"warm start, first {first}: {summary['warm_first10_low']:.3f} vs cold "
        f"{summary['cold_first10_low']:.3f} (low); {summary['warm_first10_high']:.3f} vs "
        f"{summary['cold_first10_high']:.3f} (high)"
    )
    seeds = [int(v) for v in args.table_seeds.split(",") if v.strip()]
    if seeds:
        summary["table_seeds"] = over_seeds(args.out, seeds, args.T, args.repeats)
    (args.out / "relax.json").write_text(json.dumps(summary, indent=2))
    plot(curves, args.out / "relax_regret.png")
    print(f"wrote {args.out / 'relax.json'} and {args.out / 'relax_regret.png'}")
    if args.json:
        print(json.dumps(summary))
    return 0


def over_seeds(out: Path, seeds: list[int], T: int, repeats: int) -> dict[str, Any]:
    """The default policy and chebcb on one table per seed of each setting: per-seed
    ratios to the oracle (mean over ``repeats`` policy seeds), their mean and worst."""
    rows: dict[str, Any] = {}
    print(f"\nover table seeds {seeds} ({repeats} policy seeds each):")
    for variance in ("low", "high"):
        for pol in (DEFAULT_POLICY, "chebcb"):
            ratios = []
            for seed in seeds:
                tab = get_table(out, variance, seed, T)
                runs = [replay_once(tab, pol, seed=s) for s in range(repeats)]
                ratios.append(summarize(tab, runs)["ratio_to_oracle"])
            rows[f"{variance} {pol}"] = {
                "per_seed": ratios,
                "mean": float(np.mean(ratios)),
                "worst": float(np.max(ratios)),
            }
            print(
                f"  {variance:4} {pol:10} mean {np.mean(ratios):.3f}  worst {np.max(ratios):.3f}"
                f"  ({', '.join(f'{r:.3f}' for r in ratios)})",
                flush=True,
            )
    return rows


def plot(curves: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, (variance, cs) in zip(axes, curves.items(), strict=True):
        for name, c in cs.items():
            ax.plot(
                np.arange(1, len(c) + 1),
                c,
                label=name,
                lw=2.5 if name.startswith(DEFAULT_POLICY) else 1.2,
            )
        ax.set_yscale("symlog", linthresh=100)
        ax.set_title(f"{variance} variance: cumulative regret vs per-instance oracle")
        ax.set_xlabel("instance")
        ax.set_ylabel("extra SOR iterations (cumulative)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
