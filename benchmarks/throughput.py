"""Control-plane throughput against the real PostgreSQL and RabbitMQ, in one invocation:

(a) bare Celery: a no-op task that inserts one row, 2 worker processes (the engine ceiling);
(b) Optuna ask/tell with RDB storage on the same PostgreSQL (random sampler);
(c) banditq end to end: contextual decision (default policy) with propensity row, publish,
    2 workers run the ``noop`` kind, result persisted, policy updated;
plus the history-growth run (time per trial early vs late in one long campaign) and the
50-campaign run. Prints one table and, with --json, one JSON object as the last line.
Each run makes its own database and queues and removes them afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

ADMIN = os.environ.get("BANDITQ_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
AMQP = os.environ.get("BANDITQ_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Database:
    def __init__(self) -> None:
        self.name = f"bq_bench_{uuid.uuid4().hex[:8]}"
        self.admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = ADMIN.rsplit("/", 1)[0] + "/" + self.name

    def drop(self) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def delete_queues(names: list[str]) -> None:
    import kombu

    with kombu.Connection(AMQP) as conn:
        for q in names:
            with contextlib.suppress(Exception):
                conn.channel().queue_delete(q)


def bare_celery(n: int) -> float:
    db = Database()
    queue = f"bare.{uuid.uuid4().hex[:6]}"
    dsn = db.url.replace("postgresql+psycopg", "postgresql")
    eng = create_engine(db.url)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE bare_rows (id serial primary key, i int)"))
    env = {
        **os.environ,
        "BARE_DSN": dsn,
        "BARE_QUEUE": queue,
        "BARE_BROKER": AMQP,
        "PYTHONPATH": str(ROOT / "benchmarks"),
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bare_celery",
                "worker",
                "-c",
                "1",
                "-n",
                f"bare{i}@%h",
                "-Q",
                queue,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "WARNING",
            ],
            env=env,
            cwd=ROOT / "benchmarks",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]
    try:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        os.environ.update(BARE_QUEUE=queue, BARE_BROKER=AMQP, BARE_DSN=dsn)
        import bare_celery as bc

        bc.app.conf.task_default_queue = queue
        with bc.app.producer_or_acquire() as p:  # warm-up, then the timed run
            for i in range(50):
                bc.noop_insert.apply_async((i,), producer=p)
        _wait_rows(eng, 50, 60)
        t0 = time.perf_counter()
        with bc.app.producer_or_acquire() as p:
            for i in range(n):
                bc.noop_insert.apply_async((i,), producer=p)
        _wait_rows(eng, 50 + n, 300)
        return n / (time.perf_counter() - t0)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        eng.dispose()
        db.drop()
        delete_queues([queue])


def _wait_rows(eng: Any, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with eng.connect() as c:
        while c.execute(text("SELECT count(*) FROM bare_rows")).scalar() < n:
            if time.monotonic() > deadline:
                raise TimeoutError("bare celery run did not finish")
            time.sleep(0.05)
            c.rollback()


def optuna_run(n: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = Database()
    try:
        study = optuna.create_study(storage=db.url, sampler=optuna.samplers.RandomSampler(0))
        t0 = time.perf_counter()
        for _ in range(n):
            trial = study.ask()
            x = trial.suggest_float("x", -1, 1)
            study.tell(trial, x * x)
        rate = n / (time.perf_counter() - t0)
        del study
        return rate
    finally:
        db.drop()


def banditq_run(n_total: int, n_campaigns: int = 1, in_flight: int = 256) -> dict[str, Any]:
    from app import db as bqdb
    from app.client import Client
    from app.config import Settings
    from app.dev.local import LocalCluster
    from app.scheduler import Scheduler
    from app.scheduler.hooks import MetricsHooks

    database = Database()
    queue = f"bqbench.{uuid.uuid4().hex[:6]}"
    home = Path(f"/tmp/{queue}")
    settings = Settings(
        home=home, database_url=database.url, broker_url=AMQP, queue=queue, sweep_seconds=2.0
    )
    try:
        bqdb.upgrade(database.url)
        client = Client(settings=settings)
        per = n_total // n_campaigns
        camps = []
        rng = np.random.default_rng(0)
        for ci in range(n_campaigns):
            camp = client.create_campaign(
                f"tp{ci}",
                "noop",
                [{"cost": float(i)} for i in range(8)],
                context_features=["x"],
                max_in_flight=in_flight,
            )
            xs = rng.uniform(0, 1, per)
            for lo in range(0, per, 5000):
                camp.submit_many([(None, {"x": float(x)}) for x in xs[lo : lo + 5000]])
            camps.append(camp)
        with LocalCluster(settings, workers=2, scheduler=False):
            time.sleep(6)  # workers up and consuming before the clock starts
            sch = Scheduler(settings, batch_size=500)
            th = threading.Thread(target=sch.run, daemon=True)
            t0 = time.perf_counter()
            th.start()
            eng = client.engine
            deadline = time.monotonic() + 900
            with eng.connect() as c:
                while True:
                    done = c.execute(text("SELECT count(*) FROM results")).scalar() or 0
                    c.rollback()
                    if done >= per * n_campaigns:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"banditq run stalled at {done}")
                    time.sleep(0.2)
            elapsed = time.perf_counter() - t0
            sch.stop()
            th.join(30)
        with eng.connect() as c:
            stamps = [
                r[0].timestamp()
                for r in c.execute(text("SELECT recorded_at FROM results ORDER BY id"))
            ]
        hooks = sch.hooks
        assert isinstance(hooks, MetricsHooks)
        lat = np.array(hooks.decision_latencies)
        commits = np.array(hooks.commit_latencies)
        return {
            "trials": per * n_campaigns,
            "seconds": elapsed,
            "trials_per_s": per * n_campaigns / elapsed,
            "stamps": stamps,
            "decision_p50_ms": float(np.percentile(lat, 50)),
            "decision_p99_ms": float(np.percentile(lat, 99)),
            "commit_p50_ms": float(np.percentile(commits, 50)),
            "commit_p99_ms": float(np.percentile(commits, 99)),
        }
    finally:
        database.drop()
        delete_queues([queue, f"{queue}.results", f"{queue}.events"])


def window_time(stamps: list[float], lo: int, hi: int) -> float:
    return (stamps[hi - 1] - stamps[lo]) / (hi - 1 - lo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shortened runs (under 3 minutes)")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternating bare-Celery / banditq rounds for the main ratio (default 2)",
    )
    args = ap.parse_args()
    n_main = 3000 if args.quick else 20_000
    n_hist = 12_000 if args.quick else 100_000
    early = (1000, 6000) if not args.quick else (1000, 4000)
    late = (95_000, 100_000) if not args.quick else (9000, 12_000)
    # Bare Celery and banditq alternate (rounds of n_main / rounds trials each), so a slow
    # or fast spell of this shared machine falls on both sides of the ratio.
    celery_rates: list[float] = []
    banditq_rates: list[float] = []
    for r in range(args.rounds):
        log(f"round {r + 1}/{args.rounds}: bare celery ...")
        celery_rates.append(bare_celery(n_main // args.rounds))
        log(f"  {celery_rates[-1]:.0f}/s; banditq end to end ...")
        banditq_rates.append(banditq_run(n_main // args.rounds)["trials_per_s"])
        log(f"  {banditq_rates[-1]:.0f}/s")
    celery_rate = float(np.mean(celery_rates))
    main_run = {"trials_per_s": float(np.mean(banditq_rates))}
    log("optuna ...")
    optuna_rate = optuna_run(300)
    log(f"  {optuna_rate:.1f}/s; 50 campaigns ...")
    multi = banditq_run(n_main, n_campaigns=50, in_flight=16)
    log(f"  {multi['trials_per_s']:.0f}/s; history growth ({n_hist}) ...")
    hist = banditq_run(n_hist)
    h_early = window_time(hist["stamps"], *early)
    h_late = window_time(hist["stamps"], *late)
    res = {
        "celery_trials_per_s": celery_rate,
        "optuna_trials_per_s": optuna_rate,
        "banditq_trials_per_s": main_run["trials_per_s"],
        "ratio_to_celery": main_run["trials_per_s"] / celery_rate,
        "ratio_to_optuna": main_run["trials_per_s"] / optuna_rate,
        "multi_campaign_trials_per_s": multi["trials_per_s"],
        "multi_campaign_ratio": multi["trials_per_s"] / main_run["trials_per_s"],
        "history_trials": n_hist,
        "history_early_ms_per_trial": h_early * 1000,
        "history_late_ms_per_trial": h_late * 1000,
        "history_ratio": h_late / h_early,
        "decision_p50_ms": hist["decision_p50_ms"],
        "decision_p99_ms": hist["decision_p99_ms"],
        "commit_p50_ms": hist["commit_p50_ms"],
        "commit_p99_ms": hist["commit_p99_ms"],
        "celery_rounds": celery_rates,
        "banditq_rounds": banditq_rates,
        "quick": args.quick,
    }
    print(f"{'run':40} {'trials/s':>10}")
    rounds = " / ".join(f"{c:.0f}" for c in celery_rates)
    print(f"{'bare Celery no-op + row insert':40} {celery_rate:10.0f}   rounds {rounds}")
    print(f"{'Optuna ask/tell (random, PostgreSQL)':40} {optuna_rate:10.1f}")
    rounds = " / ".join(f"{b:.0f}" for b in banditq_rates)
    print(
        f"{'banditq end to end (1 campaign)':40} {main_run['trials_per_s']:10.0f}   rounds {rounds}"
    )
    print(f"{'banditq end to end (50 campaigns)':40} {multi['trials_per_s']:10.0f}")
    print(
        f"ratios: banditq/celery {res['ratio_to_celery']:.2f} (target >= 0.75), "
        f"banditq/optuna {res['ratio_to_optuna']:.1f} (target >= 10), "
        f"50-campaign {res['multi_campaign_ratio']:.2f} (target >= 0.8)"
    )
    print(
        f"history: {h_early * 1000:.2f} ms/trial at {early}, {h_late * 1000:.2f} at {late}: "
        f"ratio {res['history_ratio']:.2f} (target <= 1.2)"
    )
    print(
        f"decision latency at {n_hist} trials: p50 {res['decision_p50_ms']:.3f} ms, "
        f"p99 {res['decision_p99_ms']:.3f} ms (targets 1 / 5); of which the commit: "
        f"p50 {res['commit_p50_ms']:.3f}, p99 {res['commit_p99_ms']:.3f} ms"
    )
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
