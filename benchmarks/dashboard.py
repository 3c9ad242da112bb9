"""Server-side time of the dashboard and the report on a campaign of 100,000 trials.

A PostgreSQL database gets one ``sor`` campaign (20 omega arms, one context feature) whose
100,000 instances, trials and results are written in bulk by SQL (costs from a smooth
function of shift and omega with noise; mostly the best arm with some exploration; 0.5%
failures, some time-outs and lease expiries; 4 workers over an hour), and a policy snapshot
of the real default policy. Then, through the real application (Starlette's in-process client,
a new application per repetition so nothing is cached): the campaign page (SQL aggregation +
summary + HTML), every plot, the page with all its plots, the campaign list, the trials CSV.

Target (issue "report and dashboard"): the page of a 100,000-trial campaign renders in <= 1 s
server-side. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from app import db  # noqa: E402
from app.client import Client  # noqa: E402
from app.config import Settings  # noqa: E402
from app.dashboard.server import create_app  # noqa: E402
from app.policies.registry import make_policy  # noqa: E402
from app.report.plots import PLOTS  # noqa: E402
from models import PolicySnapshot  # noqa: E402

PG_ADMIN = os.environ.get(
    "BANDITQ_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
OMEGAS = [round(1.0 + 0.05 * i, 2) for i in range(20)]

# One statement per table; costs ~ iterations of SOR: best omega falls as the shift grows.
FILL = """
WITH s AS (
  SELECT g AS seq, -0.15 + 0.4 * random() AS shift, random() AS u, random() AS v
  FROM generate_series(0, :n - 1) g
)
INSERT INTO instances (campaign_id, seq, context, spec, status, created_at)
SELECT :cid, seq, jsonb_build_object('shift', shift), '{}'::jsonb,
       CASE WHEN v < 0.005 THEN 'failed' ELSE 'done' END,
       :t0 + make_interval(secs => seq * 0.036)
FROM s
"""
TRIALS = """
INSERT INTO trials (uuid, campaign_id, instance_id, arm_id, arm_index, propensity, policy_name,
  policy_version, reason, state, attempt, worker, created_at, published_at, started_at,
  finished_at)
SELECT gen_random_uuid()::text, :cid, i.id, a.id, a."index", x.p, 'smooth-ts', '1', x.reason,
       CASE WHEN i.status = 'failed' THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN i.seq % 997 = 0 THEN 2 ELSE 1 END, 'worker-' || (i.seq % 4),
       i.created_at, i.created_at, i.created_at, i.created_at + interval '20 ms'
FROM instances i
CROSS JOIN LATERAL (
  SELECT CASE WHEN random() < 0.1 OR i.seq < 2000 THEN floor(random() * 20)::int
              ELSE greatest(0, least(19, round(13 - 20 * (i.context->>'shift')::float)::int))
         END AS arm,
         CASE WHEN random() < 0.1 OR i.seq < 2000 THEN 'explore' ELSE 'exploit' END AS reason,
         CASE WHEN random() < 0.1 THEN 0.05 + 0.2 * random() ELSE 0.6 + 0.4 * random() END AS p
) x
JOIN arms a ON a.campaign_id = :cid AND a."index" = x.arm
WHERE i.campaign_id = :cid
"""
RESULTS = """
INSERT INTO results (trial_id, campaign_id, attempt, status, cost, iterations, converged,
  latency_ms, device, worker, error, metrics, applied, started_at, finished_at, recorded_at)
SELECT t.id, :cid, t.attempt, t.state,
       CASE WHEN t.state = 'succeeded' THEN
         40 + 900 * power(((a.value->>'omega')::float
           - (1.65 - 1.2 * (i.context->>'shift')::float)), 2) * 4 + 5 * random() END,
       NULL, t.state = 'succeeded', 20 + 10 * random(), 'cpu', t.worker,
       CASE WHEN t.state = 'failed' THEN
         CASE WHEN i.seq % 2 = 0 THEN 'timed out: past the 30 s wall-time limit'
              ELSE 'SolverError: diverged' END END,
       '{}'::jsonb, t.state = 'succeeded', t.started_at, t.finished_at,
       t.finished_at + interval '2 ms'
FROM trials t JOIN instances i ON i.id = t.instance_id JOIN arms a ON a.id = t.arm_id
WHERE t.campaign_id = :cid
"""
EVENTS = """
INSERT INTO trial_events (campaign_id, trial_id, attempt, event, detail, at)
SELECT :cid, t.id, 1, 'lease_expired', 're-issued as attempt 2', t.created_at
FROM trials t WHERE t.campaign_id = :cid AND t.attempt = 2
"""


def build(url: str, n: int) -> str:
    client = Client(
        settings=Settings(
            home=Path("/tmp") / f"bq-dash-{uuid.uuid4().hex[:6]}",
            database_url=url,
            broker_url="memory://",
        )
    )
    name = "bench-dashboard"
    camp = client.create_campaign(name, "sor", {"omega": OMEGAS}, context_features=["shift"])
    with client.engine.begin() as conn:
        cid = conn.execute(text("SELECT id FROM campaigns WHERE name = :n"), {"n": name}).scalar()
        t0 = conn.execute(text("SELECT now() - interval '1 hour'")).scalar()
        conn.execute(text(FILL), {"cid": cid, "n": n, "t0": t0})
        conn.execute(text(TRIALS), {"cid": cid})
        conn.execute(text(RESULTS), {"cid": cid})
        conn.execute(text(EVENTS), {"cid": cid})
        conn.execute(
            text("UPDATE campaigns SET n_instances = :n, n_updates = :n WHERE id = :cid"),
            {"n": n, "cid": cid},
        )
        conn.execute(text("ANALYZE"))
    # The real default policy, taught from a sample of the rows, as its snapshot.
    pol = make_policy("default", 20, 1, arms=np.array(OMEGAS)[:, None])
    with client.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT context, arm_index, cost FROM trial_results WHERE campaign = :n AND "
                "status = 'succeeded' AND instance_seq % 50 = 0 ORDER BY instance_seq"
            ),
            {"n": name},
        ).all()
    for ctx, arm, cost in rows:
        pol.update(np.array([ctx["shift"]]), int(arm), float(cost))
    with client.Session() as s, s.begin():
        last = s.execute(text("SELECT max(id) FROM results")).scalar()
        s.add(
            PolicySnapshot(
                campaign_id=cid,
                policy_name=pol.name,
                policy_version=pol.version,
                n_updates=pol.n_updates,
                last_result_id=last,
                state=pol.get_state(),
            )
        )
    client.close()
    del camp
    return name


def timed(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def measure(url: str, name: str, repeats: int) -> dict[str, Any]:
    engine = db.make_engine(url)
    q = name

    def fresh() -> TestClient:
        return TestClient(create_app(engine))  # a new application: nothing cached

    def page() -> None:
        r = fresh().get(f"/c/{q}")
        assert r.status_code == 200, r.text[:200]

    def page_and_plots() -> None:
        web = fresh()
        assert web.get(f"/c/{q}").status_code == 200
        for k in PLOTS:
            if k != "inference":
                assert web.get(f"/c/{q}/plot/{k}.png").status_code == 200

    def one_plot(k: str) -> Any:
        def go() -> None:
            web = fresh()
            assert web.get(f"/c/{q}/plot/{k}.png").status_code == 200

        return go

    fresh().get(f"/c/{q}")  # warm: imports, fonts, connection pool
    res: dict[str, list[float]] = {
        "page (SQL + summary + HTML)": timed(page, repeats),
        "page + all 7 plots": timed(page_and_plots, repeats),
        "campaign list": timed(lambda: fresh().get("/api/campaigns"), repeats),
        "trials CSV (100k rows)": timed(lambda: fresh().get(f"/c/{q}/trials.csv"), 2),
    }
    for k in PLOTS:
        if k != "inference":
            res[f"plot {k} (SQL + draw)"] = timed(one_plot(k), repeats)
    engine.dispose()
    return {
        k: {"median_s": statistics.median(v), "max_s": max(v), "runs": len(v)}
        for k, v in res.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100_000, help="trials in the campaign")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per row (median)")
    ap.add_argument("--json", action="store_true", help="(the JSON line is always last)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2,000 trials, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.trials, args.repeats = 2000, 1
    dbname = f"bq_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{dbname}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{dbname}"
    try:
        db.upgrade(url)
        t = time.perf_counter()
        name = build(url, args.trials)
        print(f"built a {args.trials}-trial campaign in {time.perf_counter() - t:.1f} s")
        res = measure(url, name, args.repeats)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        admin.dispose()
    print(f"{'server-side time (PostgreSQL)':<34} {'median s':>9} {'max s':>7}")
    for k, v in res.items():
        print(f"{k:<34} {v['median_s']:>9.3f} {v['max_s']:>7.3f}")
    target = res["page + all 7 plots"]["median_s"]
    print(
        f"target: page <= 1 s -> page alone {res['page (SQL + summary + HTML)']['median_s']:.3f}"
        f" s, with every plot {target:.3f} s"
    )
    print(json.dumps({"trials": args.trials, "results": res}))


if __name__ == "__main__":
    main()
