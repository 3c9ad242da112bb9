"""Benchmark: choosing an inference acceleration per batch under a quality floor.

Workload: 300 batches of synthetic sentences (batch sizes 1-64, longest 8-256 tokens, padding
varies) embedded by the bundled all-MiniLM-L6-v2 on this machine's CPU at 2 threads. Every
CPU-capable standard arm is run on every batch through the real ``inference`` trial kind
(the per-batch oracle table, cached under --out; measuring takes ~20 minutes, replaying is
fast). History for warm start: an earlier profiling campaign, every arm on 150 other batches
at 1 thread (other "hardware"), as MetaInf trains on performance across tasks and hardware.

Compared, in batch order, each seeing only the chosen arm's result: the ``default`` policy
for inference (constrained-ts) cold and warm-started, fixed fp32, the best fixed arm in
hindsight (least mean latency among arms that meet the floor on >= 99% of batches), uniform
random choice, and a hand-written expert rule. Latency is the chosen arm's warm latency; a
quality probe (the policy running the reference as well, to learn an uncertain arm's quality)
adds the reference's latency to that batch. A violation is a batch served below the floor: a
monitored batch (probe, or the sampled ``monitor_fraction``) serves the reference instead.

Prints one table (mean latency / oracle, speed-up over fp32, violation rate, regret over the
first 50 batches), writes acceleration.json and acceleration.png under --out; with --json the
last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accel_table import AccelTable, get_table  # noqa: E402

from app.contexts import context_vector  # noqa: E402
from app.policies.base import Policy  # noqa: E402
from app.policies.registry import make_policy, resolve_name  # noqa: E402
from app.scheduler.runtime import sampled  # noqa: E402
from tasks.kinds.inference import FEATURES  # noqa: E402

FIRST = 50


@dataclass
class Run:
    name: str
    arms: np.ndarray
    latency: np.ndarray  # what each batch cost (ms), probes included
    violations: np.ndarray  # served below the floor
    probes: int = 0


def oracle(tab: AccelTable, floor: float) -> np.ndarray:
    feasible = tab.quality >= floor
    return np.where(feasible, tab.latency, np.inf).min(axis=1)  # type: ignore[no-any-return]


def fixed(tab: AccelTable, arm: int, floor: float, fraction: float, name: str) -> Run:
    arms = np.full(tab.T, arm)
    return _served(tab, name, arms, tab.latency[:, arm].copy(), floor, fraction)


def _served(
    tab: AccelTable,
    name: str,
    arms: np.ndarray,
    latency: np.ndarray,
    floor: float,
    fraction: float,
    probes: np.ndarray | None = None,
) -> Run:
    monitored = np.array([sampled(1, t, fraction) for t in range(tab.T)])
    if probes is not None:
        monitored |= probes
    q = tab.quality[np.arange(tab.T), arms]
    return Run(
        name, arms, latency, (q < floor) & ~monitored, int(0 if probes is None else probes.sum())
    )


def rule(tab: AccelTable, floor: float, fraction: float) -> Run:
    """What an engineer would hard-code: bf16 once the batch is big enough to pay for the
    casts, compiled when the batch is large, fp32 for tiny batches."""
    idx = {n: i for i, n in enumerate(tab.names)}
    arms = []
    for c in tab.contexts:
        tokens = c["batch_size"] * c["seq_len_max"]
        if tokens >= 2048:
            arms.append(idx["bf16+compile"])
        elif tokens >= 128:
            arms.append(idx["bf16"])
        else:
            arms.append(idx["fp32"])
    a = np.asarray(arms)
    return _served(tab, "expert rule", a, tab.latency[np.arange(tab.T), a], floor, fraction)


def make(tab: AccelTable, floor: float, seed: int, policy: str = "default") -> Policy:
    from tasks.kinds.inference import InferenceKind

    name = resolve_name(policy, InferenceKind.default_policy)
    config = {"quality_floor": floor, "reference_arm": tab.names.index("fp32")}
    if name != "constrained-ts":
        config = {}
    return make_policy(name, len(tab.names), len(FEATURES), seed=seed, config=config)


def warm(policy: Policy, hist: AccelTable) -> Policy:
    """Earlier campaign's results -> the policy (the same update path as warm_start_from)."""
    for t in range(hist.T):
        x = context_vector(hist.contexts[t], list(FEATURES))
        for a in range(len(hist.names)):
            policy.update(x, a, float(hist.latency[t, a]), float(hist.quality[t, a]))
    return policy


def online(tab: AccelTable, policy: Policy, floor: float, fraction: float, name: str) -> Run:
    ref = tab.names.index("fp32")
    arms = np.zeros(tab.T, dtype=int)
    lat = np.zeros(tab.T)
    probes = np.zeros(tab.T, dtype=bool)
    for t in range(tab.T):
        x = context_vector(tab.contexts[t], list(FEATURES))
        d = policy.choose(x, key=t)
        a = d.arm
        arms[t] = a
        probe = d.reason == "quality-probe"
        probes[t] = probe
        lat[t] = tab.latency[t, a] + (tab.latency[t, ref] if probe and a != ref else 0.0)
        monitored = probe or sampled(1, t, fraction)
        policy.update(
            x, a, float(tab.latency[t, a]), float(tab.quality[t, a]) if monitored else None
        )
    return _served(tab, name, arms, lat, floor, fraction, probes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--history", type=int, default=150, help="batches in the warm-start history")
    ap.add_argument("--floor", type=float, default=0.99, help="mean cosine quality floor")
    ap.add_argument("--monitor-fraction", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5, help="policy seeds averaged")
    ap.add_argument("--timing-repeats", type=int, default=2, help="timed runs per cell")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    ap.add_argument(
        "--quick", action="store_true", help="a smoke run: 30 batches, 20 of history, 1 seed"
    )
    args = ap.parse_args()
    if args.quick:
        args.batches, args.history, args.repeats, args.timing_repeats = 30, 20, 1, 1
    tab = get_table(args.out, args.batches, 1, 2, args.timing_repeats)
    hist = get_table(args.out, args.history, 2, 1, args.timing_repeats)
    if hist.names != tab.names:
        raise SystemExit("history and target tables have different arm sets; delete --out")
    floor, frac = args.floor, args.monitor_fraction
    best = oracle(tab, floor)
    ok_rate = (tab.quality >= floor).mean(axis=0)
    eligible = [a for a in range(len(tab.names)) if ok_rate[a] >= 0.99]
    best_arm = min(eligible, key=lambda a: tab.latency[:, a].mean())
    fp32 = tab.names.index("fp32")

    def many(build: Callable[[int], Policy], name: str) -> list[Run]:
        return [online(tab, build(s), floor, frac, name) for s in range(args.repeats)]

    runs: dict[str, list[Run]] = {
        "default (cold)": many(lambda s: make(tab, floor, s), "default (cold)"),
        "default (warm)": many(lambda s: warm(make(tab, floor, s), hist), "default (warm)"),
        "fixed fp32": [fixed(tab, fp32, floor, frac, "fixed fp32")],
        f"best fixed ({tab.names[best_arm]})": [fixed(tab, best_arm, floor, frac, "best fixed")],
        "expert rule": [rule(tab, floor, frac)],
        "random": [
            _served(
                tab,
                "random",
                a := np.random.default_rng(s).integers(0, len(tab.names), tab.T),
                tab.latency[np.arange(tab.T), a],
                floor,
                frac,
            )
            for s in range(args.repeats)
        ],
    }
    mean_oracle = best.mean()
    rows = {}
    for name, rs in runs.items():
        rows[name] = {
            "latency_ratio_to_oracle": float(np.mean([r.latency.mean() for r in rs]) / mean_oracle),
            "speedup_over_fp32": float(
                tab.latency[:, fp32].mean() / np.mean([r.latency.mean() for r in rs])
            ),
            "violation_rate": float(np.mean([r.violations.mean() for r in rs])),
            "first50_regret_ms": float(
                np.mean([(r.latency[:FIRST] - best[:FIRST]).sum() for r in rs])
            ),
            "probes": float(np.mean([r.probes for r in rs])),
        }
    print(
        f"\n{tab.T} batches, {len(tab.names)} arms ({', '.join(tab.names)}); floor {floor}; "
        f"oracle mean {mean_oracle:.1f} ms; per-arm share meeting the floor: "
        + ", ".join(f"{n} {r:.2f}" for n, r in zip(tab.names, ok_rate, strict=True))
    )
    print(
        f"{'method':28s} {'lat/oracle':>10s} {'x fp32':>8s} {'viol':>7s} "
        f"{'regret50 ms':>12s} {'probes':>7s}"
    )
    for name, r in rows.items():
        print(
            f"{name:28s} {r['latency_ratio_to_oracle']:10.3f} {r['speedup_over_fp32']:8.2f} "
            f"{r['violation_rate']:7.3f} {r['first50_regret_ms']:12.0f} {r['probes']:7.1f}"
        )
    share = np.mean(
        [
            np.mean([sampled(1, t, frac) and r.arms[t] != fp32 for t in range(tab.T)])
            for r in runs["default (cold)"]
        ]
    )
    overhead = share * tab.latency[:, fp32].mean() / mean_oracle
    print(
        f"sampled quality monitoring ({frac:.0%} of batches) would add {overhead:.3f} x oracle "
        "to any non-fp32 method's latency if run inline (not counted above)"
    )
    cold, warm_r = rows["default (cold)"], rows["default (warm)"]
    best_name = next(k for k in rows if k.startswith("best fixed"))
    summary = {
        "batches": tab.T,
        "arms": tab.names,
        "quality_floor": floor,
        "policy": resolve_name("default", "inference"),
        "policy_latency_ratio_to_oracle": cold["latency_ratio_to_oracle"],
        "warm_policy_latency_ratio_to_oracle": warm_r["latency_ratio_to_oracle"],
        "best_fixed_arm": tab.names[best_arm],
        "best_fixed_latency_ratio_to_oracle": rows[best_name]["latency_ratio_to_oracle"],
        "fp32_latency_ratio_to_oracle": rows["fixed fp32"]["latency_ratio_to_oracle"],
        "expert_latency_ratio_to_oracle": rows["expert rule"]["latency_ratio_to_oracle"],
        "random_latency_ratio_to_oracle": rows["random"]["latency_ratio_to_oracle"],
        "policy_speedup_over_fp32": cold["speedup_over_fp32"],
        "violation_rate": cold["violation_rate"],
        "warm_violation_rate": warm_r["violation_rate"],
        "warm_first50_regret": warm_r["first50_regret_ms"],
        "cold_first50_regret": cold["first50_regret_ms"],
        "rows": rows,
    }
    summary["targets"] = {
        "within_1.15x_oracle": summary["policy_latency_ratio_to_oracle"] <= 1.15,
        "below_best_fixed": summary["policy_latency_ratio_to_oracle"]
        < summary["best_fixed_latency_ratio_to_oracle"],
        "violations_at_most_1pct": summary["violation_rate"] <= 0.01,
        "warm_halves_first50_regret": summary["warm_first50_regret"]
        <= 0.5 * summary["cold_first50_regret"],
    }
    print(
        "targets: "
        + ", ".join(f"{k} {'MET' if v else 'MISSED'}" for k, v in summary["targets"].items())
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "acceleration.json").write_text(json.dumps(summary, indent=2))
    plot(runs, best, args.out / "acceleration.png")
    print(f"wrote {args.out / 'acceleration.json'} and {args.out / 'acceleration.png'}")
    if args.json:
        print(json.dumps(summary))
    return 0


def plot(runs: dict[str, list[Run]], best: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, rs in runs.items():
        curve = np.mean([np.cumsum(r.latency - best) for r in rs], axis=0) / 1000.0
        style = "--" if "warm" in name else "-"  # warm sits on the best fixed arm's line
        ax[0].plot(curve, style, label=name)
        ax[1].plot(curve[:FIRST], style, label=name)
    ax[0].set(title="cumulative latency regret vs per-batch oracle", xlabel="batch", ylabel="s")
    ax[1].set(title=f"first {FIRST} batches", xlabel="batch", ylabel="s")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
