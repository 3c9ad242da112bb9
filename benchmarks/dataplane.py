"""The data plane side by side: what one trial costs in bytes and in control-plane time.

* ``solve`` overhead: wall time of ``camp.solve`` minus the worker's reported latency, over
  sequential solves of a small system, on PostgreSQL + RabbitMQ (waits woken by NOTIFY) and
  on the embedded default (SQLite + a filesystem broker, waits poll);
* for n ~ 10^4, 10^5, 10^6, a stored matrix and a generator spec: the trial message's bytes
  on the broker, the result row's bytes, and the solve's wall time (10^6 end to end on both
  deployments).

Targets (issue "Large systems by reference"): overhead p50 <= 10 ms and p99 <= 30 ms on
PostgreSQL + RabbitMQ, p50 <= 30 ms embedded; <= 2 KiB per trial on the broker and <= 1 KiB
per result row at every n. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from app import db  # noqa: E402
from app.client import Client  # noqa: E402
from app.config import Settings  # noqa: E402
from app.dev.local import LocalCluster  # noqa: E402
from tasks.linsys import LinearSystem  # noqa: E402
from tasks.messages import TrialMessage  # noqa: E402
from tasks.solvers.generators import build, validate  # noqa: E402

PG_ADMIN = os.environ.get(
    "BANDITQ_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
AMQP = os.environ.get("BANDITQ_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def overhead(client: Client, solves: int) -> dict[str, float]:
    camp = client.create_campaign(f"overhead-{uuid.uuid4().hex[:6]}", "sor", {"omega": [1.5]})
    system = LinearSystem.laplace2d(6, 0.2, seed=1)
    for _ in range(5):  # warm: connections, compiled kernels, the worker's caches
        camp.solve(system, {}, timeout=120)
    over = []
    for _ in range(solves):
        t = time.perf_counter()
        sol = camp.solve(system, {}, timeout=120)
        over.append((time.perf_counter() - t) * 1000.0 - (sol.latency_ms or 0.0))
    a = np.array(over)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "solves": solves}  # fmt: skip


def sizes(client: Client, grids: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    camp = client.create_campaign(
        f"sizes-{uuid.uuid4().hex[:6]}", "sor", {"omega": [1.9]}, max_in_flight=1
    )
    for m in grids:
        A, b = build(validate({"generator": "laplace2d", "m": m, "seed": 1}))
        for label, system in (
            ("stored", LinearSystem(A, b)),
            ("generator", LinearSystem.laplace2d(m, 0.0, seed=1)),
        ):
            t = time.perf_counter()
            sol = camp.solve(system, {}, tol=1e-300, max_iters=10, timeout=600)
            wall = time.perf_counter() - t
            with client.engine.connect() as c:
                spec = c.execute(
                    text("SELECT spec FROM instances ORDER BY id DESC LIMIT 1")
                ).scalar()
                row = c.execute(
                    text(
                        "SELECT length(CAST(metrics AS text)) + coalesce(length(CAST(outputs AS "
                        "text)), 0) + coalesce(length(error), 0) + 150 FROM results "
                        "ORDER BY id DESC LIMIT 1"
                    )
                ).scalar()
            spec = json.loads(spec) if isinstance(spec, str) else dict(spec or {})
            trial = TrialMessage(str(uuid.uuid4()), 1, camp.name, "sor", spec, {"omega": 1.9})
            msg = trial.to_json()
            out[f"{m * m}/{label}"] = {
                "broker_bytes": len(json.dumps([[msg], {}, {}])) + 400,  # + Celery headers
                "result_row_bytes": int(row or 0),
                "solve_s": wall,
                "n": m * m,
                "converged_or_capped": sol.iterations == 10,
            }
    return out


def run(settings: Settings, solves: int, grids: list[int], label: str) -> dict[str, Any]:
    client = Client(settings=settings)
    try:
        with LocalCluster(settings, workers=1):
            res = {"overhead_ms": overhead(client, solves), "sizes": sizes(client, grids)}
    finally:
        client.close()
    o = res["overhead_ms"]
    print(f"{label}: solve overhead p50 {o['p50']:.1f} ms, p99 {o['p99']:.1f} ms ({solves} solves)")
    for key, r in res["sizes"].items():
        print(
            f"  n {key:<18} broker {r['broker_bytes']:>6} B/trial  result row "
            f"{r['result_row_bytes']:>5} B  solve {r['solve_s']:.2f} s"
        )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 solves, n up to 10^5")
    ap.add_argument("--json", action="store_true", help="(the JSON line is always last)")
    args = ap.parse_args()
    solves = 100 if args.quick else 500
    grids = [100, 316] + ([] if args.quick else [1000])
    results: dict[str, Any] = {}
    name = f"bq_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        db.upgrade(url)
        with tempfile.TemporaryDirectory() as home:
            pg = Settings(home=Path(home), database_url=url, broker_url=AMQP, queue=f"bench.{name}")
            results["postgresql_rabbitmq"] = run(pg, solves, grids, "PostgreSQL + RabbitMQ")
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    with tempfile.TemporaryDirectory() as home:
        emb = Settings(home=Path(home))
        results["embedded"] = run(emb, solves, grids, "embedded (SQLite + filesystem broker)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
