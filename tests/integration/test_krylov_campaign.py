"""A solver-selection campaign end to end on PostgreSQL + RabbitMQ: a mixed stream of stored
matrices (2-D Poisson, anisotropic, elasticity), the default configurations, a fallback with
a budget, real worker processes; every instance solved to tolerance, exactly once."""

from __future__ import annotations

import json

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
from sqlalchemy import select, text

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from app.scheduler.runtime import build_policy, load_runtime
from models import Arm, Campaign
from tasks.kinds.krylov import DEFAULT_SPD
from tasks.linsys import LinearSystem, laplace2d


def test_a_mixed_stream_of_stored_matrices_on_postgresql(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "solvers",
        "krylov",
        "default",
        context_features=[
            "log_n",
            "nnz_per_row",
            "symmetric",
        ],  # a stored matrix's reference gives these
        policy_config={"fallback": {"arm": 10, "budget": 3.0}},  # cg + smoothed aggregation
        max_in_flight=4,
    )
    elasticity, _B = pyamg.gallery.linear_elasticity((16, 16))
    aniso = sp.csr_matrix(
        pyamg.gallery.stencil_grid(pyamg.gallery.diffusion_stencil_2d(0.01), (24, 24))
    )
    mats = [client.store_matrix(A) for A in (laplace2d(24), aniso, sp.csr_matrix(elasticity))]
    rng = np.random.default_rng(0)
    items: list[tuple[LinearSystem, dict[str, float]]] = []
    for t in range(18):
        handle = mats[t % 3]
        b = rng.standard_normal(handle.n)
        items.append((LinearSystem.affine(handle, b, alpha=0.0, beta=1.0), {}))
    ids = camp.submit_many(items, tol=1e-8)
    with LocalCluster(pg_settings, workers=2) as cluster:
        cluster.wait_ready()
        camp.wait(timeout=300)
    rows = camp.results()
    assert len(rows) == len(ids) and all(r["status"] == "succeeded" for r in rows)
    assert all(r["converged"] and r["residual"] <= 1e-8 for r in rows)
    assert all(r["cost"] > 0 for r in rows)
    with client.engine.connect() as c:
        per_instance = (
            c.execute(
                text(
                    "SELECT count(*) FROM results r JOIN trials t ON t.id = r.trial_id "
                    "WHERE r.status = 'succeeded' GROUP BY t.instance_id"
                )
            )
            .scalars()
            .all()
        )
        budgets = c.execute(text("SELECT count(*) FROM trials WHERE budget IS NOT NULL")).scalar()
        # each result carries one product's time on its worker (its time in products, in SQL)
        matvec_ms = (
            c.execute(
                text(
                    "SELECT (metrics->>'matvec_ms')::float FROM results WHERE status = 'succeeded'"
                )
            )
            .scalars()
            .all()
        )
        # before any result, budgets in products of the matrix (the history's level), which
        # the workers converted with the product's time they measured
        units = dict(
            c.execute(
                text("SELECT coalesce(budget_unit, 'cost'), count(*) FROM trials GROUP BY 1")
            ).all()
        )
        firsts = c.execute(
            text("SELECT count(*) FROM trials WHERE reason = 'fallback:first'")
        ).scalar()
        logged = c.execute(
            text("SELECT DISTINCT policy_name FROM trials WHERE reason <> 'fallback:first'")
        ).scalars()
        policies = sorted(logged)
        low, high = c.execute(text("SELECT min(propensity), max(propensity) FROM trials")).one()
        config = c.execute(
            text("SELECT policy_config FROM campaigns WHERE name = 'solvers'")
        ).scalar_one()
    assert sorted(per_instance) == [1] * len(ids)  # exactly once
    assert len(matvec_ms) == len(ids) and all(v > 0 for v in matvec_ms), matvec_ms
    assert budgets and budgets >= len(ids) - 4  # the fallback's own trials have none
    assert units.get("matvec", 0) >= 1 and firsts == 0, (units, firsts)
    # "default" on a krylov campaign: configurations that share what is learnt
    assert any("shared-kg" in p for p in policies), policies
    assert 0.0 < low <= high <= 1.0
    # the history prior, relative to the campaign's own fallback, stored with the campaign
    # (the scheduler built its policy from it)
    config = json.loads(config) if isinstance(config, str) else config
    prior = config["prior"]
    assert len(prior["offset"]) == len(DEFAULT_SPD) and prior["offset"][10] == 0.0
    assert len(prior["slope"][0]) == 3 and any(row[0] != 0.0 for row in prior["slope"])
    assert config["fallback"]["level"]["offset"] > 0.0
    # timed in seconds, the policy learnt each time over its matrix's product time: the
    # scheduler's state (its snapshot and the results after it) equals a fresh policy fed
    # every logged result so converted, here in SQL
    assert config["cost_unit"] == "matvec" and config["prior"]["level"]["sd"] > 0.0
    with client.Session() as s:
        cid = s.scalar(select(Campaign.id).where(Campaign.name == "solvers"))
        live = load_runtime(s, cid).policy
        camp_row = s.get(Campaign, cid)
        assert camp_row is not None
        arm_rows = list(s.scalars(select(Arm).where(Arm.campaign_id == cid).order_by(Arm.index)))
        fresh = build_policy(camp_row, arm_rows)
        logged = s.execute(
            text(
                "SELECT r.cost / ((r.metrics->>'matvec_ms')::float / 1000.0), t.arm_index, "
                "i.context, r.censored FROM results r JOIN trials t ON t.id = r.trial_id "
                "JOIN instances i ON i.id = t.instance_id WHERE r.campaign_id = :c "
                "AND r.applied ORDER BY r.id"
            ),
            {"c": cid},
        ).all()
    features = ["log_n", "nnz_per_row", "symmetric"]
    contexts = []
    for products, arm, ctx, censored in logged:
        x = np.array([float(ctx[f]) for f in features])
        contexts.append(x)
        if censored:
            fresh.update_censored(x, arm, float(products))
        else:
            fresh.update(x, arm, float(products))
    assert len(logged) == len(ids) and fresh.n_updates == live.n_updates == len(ids)
    for k, x in enumerate(contexts):
        assert fresh.choose(x, key=1000 + k) == live.choose(x, key=1000 + k)
        for arm in (0, 10):  # in products: what one solve takes, not seconds
            got, want = live.inner.estimated_cost(x, arm), fresh.inner.estimated_cost(x, arm)  # type: ignore[attr-defined]
            assert got == pytest.approx(want, rel=1e-6) and got > 1.0
    client.close()
