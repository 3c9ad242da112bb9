"""Decision + update cost of a policy as history and context features grow (issue: a default
policy that stays cheap with several features).

For each number of context features d, 50 ordered arms (omega in [1, 1.98]) and a context
that drifts into new ranges (an SOR-like cost: log cost grows with the distance of omega from
an optimum that moves with the context), the policy learns ``--history`` results; then the
time of one ``choose`` + ``update`` is measured over the next ``--measure`` steps (p50, p99,
mean), with the amortized cost of the whole history and the size of its JSON state. Where
the policy is smooth-ts (``default`` up to 3 features) the same learnt state is also timed
with ``lazy_rank=0`` (one rank-one downdate of the P x P covariance per result, as before
the lazy updates): side by side, one run.
Prints one table; --json adds one JSON object as the last line.
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

from app.policies.base import Policy  # noqa: E402
from app.policies.registry import make_policy  # noqa: E402

K = 50
OMEGAS = np.linspace(1.0, 1.98, K)


def stream(d: int, T: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (T x d) drifting from [0, 1] toward [0, 4] with noise, and each context's
    optimal omega (moves with the first two features)."""
    rng = np.random.default_rng(seed)
    drift = np.linspace(0.0, 3.0, T)[:, None]
    x = rng.uniform(0.0, 1.0, (T, d)) + drift * rng.uniform(0.5, 1.0, d)[None, :]
    z = x[:, : min(d, 2)].sum(axis=1) / (4.0 * min(d, 2))
    return x, 1.2 + 0.75 * np.clip(z, 0.0, 1.0)


def cost(opt: float, arm: int, rng: np.random.Generator) -> float:
    gap = OMEGAS[arm] - opt
    return float(np.exp(3.0 + 12.0 * gap * gap + (4.0 * gap if gap > 0 else 0.0)))


def timed(policy: Policy, x: np.ndarray, opt: np.ndarray, start: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(start)
    out = np.empty(n)
    for i in range(n):
        t = start + i
        t0 = time.perf_counter()
        arm = policy.choose(x[t], key=t).arm
        policy.update(x[t], arm, cost(opt[t], arm, rng))
        out[i] = time.perf_counter() - t0
    return out * 1000.0


def run(name: str, d: int, history: int, measure: int) -> list[dict[str, Any]]:
    x, opt = stream(d, history + measure, seed=d)
    pol = make_policy(name, K, d, arms=OMEGAS[:, None], seed=0)
    t0 = time.perf_counter()
    timed(pol, x, opt, 0, history)
    amortized = (time.perf_counter() - t0) * 1000.0 / history
    state = pol.get_state()
    size = len(json.dumps(state))
    rows = []
    label = name if name == pol.name else f"{name} ({pol.name})"
    variants: list[tuple[str, Policy]] = [(label, pol)]
    if pol.name == "smooth-ts":
        twin = make_policy(pol.name, K, d, arms=OMEGAS[:, None], config={"lazy_rank": 0})
        twin.set_state(state)
        variants.append((f"{pol.name} (lazy_rank=0)", twin))
    for label, p in variants:
        ms = timed(p, x, opt, history, measure)
        rows.append(
            {
                "policy": label,
                "features": d,
                "arms": K,
                "history": history,
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "mean_ms": float(ms.mean()),
                "amortized_history_ms": amortized if p is pol else None,
                "state_bytes": size,
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--history", type=int, default=10_000, help="results learnt before timing")
    ap.add_argument("--measure", type=int, default=500, help="steps timed after the history")
    ap.add_argument("--features", default="1,2,3,4", help="numbers of context features")
    ap.add_argument("--policies", default="default,lin-ts,chebcb")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    ap.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    args = ap.parse_args()
    if args.quick:
        args.history, args.measure, args.features, args.policies = 300, 30, "1", "default"
    rows: list[dict[str, Any]] = []
    print(
        f"{'policy':30} {'d':>2} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
        f"{'amort. ms':>9} {'state MB':>9}"
    )
    for d in (int(v) for v in args.features.split(",")):
        for name in args.policies.split(","):
            try:
                got = run(name, d, args.history, args.measure)
            except ValueError as exc:  # a policy that does not take d features
                print(f"{name:30} {d:>2} {'-':>8}  ({exc})")
                continue
            for r in got:
                amort = r["amortized_history_ms"]
                print(
                    f"{r['policy']:30} {d:>2} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} "
                    f"{r['mean_ms']:8.3f} {'' if amort is None else f'{amort:9.3f}':>9} "
                    f"{r['state_bytes'] / 1e6:9.2f}",
                    flush=True,
                )
            rows.extend(got)
    if args.json:
        print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
