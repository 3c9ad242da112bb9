"""Real PostgreSQL and RabbitMQ: a scheduler and two workers started with the CLI complete a
campaign of 200 Laplacian instances, each with exactly one succeeded trial."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from tasks.linsys import LinearSystem

OMEGAS = [round(1.0 + 0.05 * i, 2) for i in range(20)]


def test_two_hundred_instances_each_exactly_one_succeeded_trial(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "e2e-200",
        "sor",
        {"omega": OMEGAS},
        policy="epsilon-greedy",
        context_features=["shift"],
        max_in_flight=4,
    )
    shifts = -0.15 + 0.6 * np.random.default_rng(0).beta(2, 6, size=200)
    with LocalCluster(pg_settings, workers=2) as cluster:
        camp.submit_many(
            [
                (LinearSystem.laplace2d(10, float(c), seed=i), {"shift": float(c)})
                for i, c in enumerate(shifts)
            ],
            tol=1e-8,
            max_iters=10_000,
        )
        try:
            camp.wait(timeout=240)
        except TimeoutError:
            cluster.check()
            raise
        # solve() through the same real path
        system = LinearSystem.laplace2d(10, 0.1, seed=999)
        sol = camp.solve(system, {"shift": 0.1}, timeout=60)
    A, b = system.build()
    assert np.linalg.norm(A @ sol.x - b) / np.linalg.norm(b) < 1e-8
    with client.engine.connect() as c:
        per_instance = c.execute(
            text(
                "SELECT instance_id, count(*) FILTER (WHERE status = 'succeeded') AS ok, "
                "count(*) AS n "
                "FROM trial_results WHERE campaign = 'e2e-200' GROUP BY instance_id"
            )
        ).all()
        workers = (
            c.execute(text("SELECT DISTINCT worker FROM trial_results WHERE campaign = 'e2e-200'"))
            .scalars()
            .all()
        )
        updates = c.execute(text("SELECT n_updates FROM campaigns WHERE name = 'e2e-200'")).scalar()
    assert len(per_instance) == 201
    assert all(ok == 1 and n == 1 for _i, ok, n in per_instance)
    assert updates == 201
    assert len(workers) == 2  # both workers took trials
    rows = camp.results(as_frame=True)
    assert rows["converged"].all() and (rows["iterations"] > 0).all()


def test_embedded_and_production_share_the_client_api(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "reopen", "sor", {"omega": [1.2, 1.8]}, context_features=["shift"]
    )
    assert client.campaign("reopen").id == camp.id
    assert "reopen" in client.campaigns()
