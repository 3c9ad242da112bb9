"""Ask/tell latency in the caller, side by side in one invocation:

(a) banditq on PostgreSQL + RabbitMQ: an ``external`` campaign (8 arms, one context feature,
    the default policy), ``banditq scheduler`` running beside; N sequential ask+tell pairs,
    each ask and each tell timed in the caller; then ``ask_many`` of 64 contexts;
(b) the same on the embedded default (SQLite and the filesystem broker);
(c) Optuna's ask/tell with RDB storage on the same PostgreSQL (a categorical parameter over
    the same 8 arms, the random sampler: what is timed is the ask/tell round trip through
    the storage, not a sampler's model), N sequential pairs.

Costs come from a synthetic wall-time model (the best arm moves with the context, log-normal
noise); the run also reports the mean cost per pair of (a) against the best fixed arm.
Prints one table and, with --json, one JSON object as the last line. Each run makes its own
database, queues and folders and removes them afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import AMQP, Database, delete_queues  # noqa: E402

ARMS = [round(1.0 + 0.125 * i, 3) for i in range(8)]
#: ask_many(64) calls timed after the sequential pairs (their median is reported)
BURSTS = 40


def expected_cost(omega: float, c: float) -> float:
    """Seconds of a synthetic solve on average: the best omega is 1.1 + 0.7 c."""
    return 0.05 + 2.0 * (omega - (1.1 + 0.7 * c)) ** 2


def cost_of(omega: float, c: float, rng: np.random.Generator) -> float:
    """One measured solve: the expected cost with log-normal (multiplicative) noise."""
    return float(expected_cost(omega, c) * rng.lognormal(0.0, 0.2))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def latencies(n: int, asks: list[float], tells: list[float]) -> dict[str, Any]:
    return {
        "pairs": n,
        "ask_p50_ms": pct(asks, 50),
        "ask_p99_ms": pct(asks, 99),
        "tell_p50_ms": pct(tells, 50),
        "tell_p99_ms": pct(tells, 99),
    }


def run_banditq(settings: Any, n: int, label: str) -> dict[str, Any]:
    from app import db
    from app.client import Client
    from app.dev.local import LocalCluster

    if settings.database_url.startswith("postgresql"):
        db.upgrade(settings.database_url)
    rng = np.random.default_rng(7)
    with Client(settings=settings) as client, LocalCluster(settings, workers=0):
        camp = client.create_campaign(
            "asktell", "external", {"omega": ARMS}, context_features=["c"]
        )
        camp.ask({"c": 0.5}, timeout=120)  # the scheduler is up; the first decision made
        asks: list[float] = []
        tells: list[float] = []
        paid: list[float] = []
        contexts = rng.random(n)
        t_start = time.perf_counter()
        for i, c in enumerate(contexts):
            t0 = time.perf_counter()
            d = camp.ask({"c": float(c)})
            t1 = time.perf_counter()
            cost = cost_of(d.arm["omega"], float(c), rng)
            camp.tell(d, cost=cost)
            t2 = time.perf_counter()
            asks.append((t1 - t0) * 1e3)
            tells.append((t2 - t1) * 1e3)
            paid.append(expected_cost(d.arm["omega"], float(c)))
            if (i + 1) % 500 == 0:
                print(f"  {label}: {i + 1}/{n}", file=sys.stderr, flush=True)
        wall = time.perf_counter() - t_start
        many: list[float] = []
        for _ in range(BURSTS):
            batch = [{"c": float(x)} for x in rng.random(64)]
            t0 = time.perf_counter()
            ds = camp.ask_many(batch)
            many.append((time.perf_counter() - t0) * 1e3)
            for d, ctx in zip(ds, batch, strict=True):
                camp.tell(d, cost=cost_of(d.arm["omega"], ctx["c"], rng))
    late = contexts[n // 2 :]
    fixed = min(float(np.mean([expected_cost(w, c) for c in late])) for w in ARMS)
    return {
        **latencies(n, asks, tells),
        "ask_many64_p50_ms": pct(many, 50),
        "pairs_per_s": n / wall,
        "late_mean_cost_vs_best_fixed": float(np.mean(paid[n // 2 :])) / fixed,
    }


def run_optuna(url: str, n: int) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(
        storage=storage,
        study_name="asktell",
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=7),
    )
    dist: dict[str, optuna.distributions.BaseDistribution] = {
        "omega": optuna.distributions.CategoricalDistribution(ARMS)
    }
    rng = np.random.default_rng(7)
    asks: list[float] = []
    tells: list[float] = []
    for i, c in enumerate(rng.random(n)):
        t0 = time.perf_counter()
        trial = study.ask(dist)
        t1 = time.perf_counter()
        study.tell(trial, cost_of(float(trial.params["omega"]), float(c), rng))
        t2 = time.perf_counter()
        asks.append((t1 - t0) * 1e3)
        tells.append((t2 - t1) * 1e3)
        if (i + 1) % 500 == 0:
            print(f"  optuna: {i + 1}/{n}", file=sys.stderr, flush=True)
    storage.remove_session()
    storage.engine.dispose()
    return latencies(n, asks, tells)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 pairs per run (under a minute)")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    ap.add_argument("--pairs", type=int, default=2000, help="sequential ask+tell pairs per run")
    ap.add_argument("--skip-optuna", action="store_true", help="leave out run (c)")
    args = ap.parse_args()
    n = 200 if args.quick else args.pairs
    from app.config import Settings

    res: dict[str, Any] = {"pairs": n}
    database = Database()
    queue = f"bench.asktell.{uuid.uuid4().hex[:6]}"
    home = Path(tempfile.mkdtemp(prefix="bq-asktell-"))
    try:
        pg = Settings(home=home / "pg", database_url=database.url, broker_url=AMQP, queue=queue)
        print("(a) banditq, PostgreSQL + RabbitMQ", file=sys.stderr)
        res["banditq_pg"] = run_banditq(pg, n, "banditq pg")
        print("(b) banditq, embedded default", file=sys.stderr)
        res["banditq_embedded"] = run_banditq(Settings(home=home / "embedded"), n, "embedded")
    finally:
        database.drop()
        delete_queues([queue, f"{queue}.results", f"{queue}.events"])
    if not args.skip_optuna:
        other = Database()
        try:
            print("(c) Optuna ask/tell, RDB storage on PostgreSQL", file=sys.stderr)
            res["optuna_pg"] = run_optuna(other.url, n)
        finally:
            other.drop()
    shutil.rmtree(home, ignore_errors=True)
    _table(res)
    if args.json:
        print(json.dumps(res))
    return 0


def _table(res: dict[str, Any]) -> None:
    rows = [
        ("banditq, PostgreSQL + RabbitMQ", "banditq_pg"),
        ("banditq, embedded", "banditq_embedded"),
        ("Optuna, RDB on PostgreSQL", "optuna_pg"),
    ]
    head = ("ask p50", "ask p99", "tell p50", "tell p99", "ask_many(64)")
    print(f"{'run':34} {head[0]:>8} {head[1]:>8} {head[2]:>9} {head[3]:>9} {head[4]:>13}")
    for label, key in rows:
        r = res.get(key)
        if r is None:
            continue
        many = r.get("ask_many64_p50_ms")
        shown = "-" if many is None else f"{many:.1f} ms"
        print(
            f"{label:34} {r['ask_p50_ms']:6.2f}ms {r['ask_p99_ms']:6.2f}ms "
            f"{r['tell_p50_ms']:7.2f}ms {r['tell_p99_ms']:7.2f}ms {shown:>13}"
        )
    a = res.get("banditq_pg")
    if a:
        print(
            f"ask_many(64) / ask p50: {a['ask_many64_p50_ms'] / a['ask_p50_ms']:.1f}x; "
            f"banditq's mean cost in the second half vs the best fixed arm: "
            f"{a['late_mean_cost_vs_best_fixed']:.2f}x"
        )
    o = res.get("optuna_pg")
    if a and o:
        print(f"Optuna ask p50 / banditq ask p50: {o['ask_p50_ms'] / a['ask_p50_ms']:.1f}x")


if __name__ == "__main__":
    os.environ.setdefault("BANDITQ_LOG_LEVEL", "WARNING")
    raise SystemExit(main())
