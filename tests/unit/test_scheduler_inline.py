"""The real scheduler on the embedded SQLite database, trials executed inline."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select, text

from app.client import Client
from app.config import Settings
from app.scheduler.runtime import load_runtime
from models import Campaign, Instance, PolicySnapshot, Result, Trial
from tasks.linsys import LinearSystem
from tests.inline import InlineScheduler, statements_per_step
from workers.run_trial import execute

OMEGAS = [1.0, 1.2, 1.4, 1.6, 1.8]


def _campaign(
    client: Client, name: str = "c1", policy: str = "epsilon-greedy", n: int = 30, **kw: object
):  # type: ignore[no-untyped-def]
    camp = client.create_campaign(
        name, "sor", {"omega": OMEGAS}, policy=policy, context_features=["shift"], **kw
    )  # type: ignore[arg-type]
    shifts = np.linspace(-0.1, 0.4, n)
    camp.submit_many(
        [
            (LinearSystem.laplace2d(6, float(c), seed=i), {"shift": float(c)})
            for i, c in enumerate(shifts)
        ],
        tol=1e-8,
        max_iters=5000,
    )
    return camp


def test_campaign_completes_with_one_succeeded_trial_per_instance(
    embedded_settings: Settings,
) -> None:
    client = Client(settings=embedded_settings)
    camp = _campaign(client, max_in_flight=3)
    sch = InlineScheduler(embedded_settings)
    assert sch.run_until_idle() == 30
    rows = camp.results()
    assert len(rows) == 30
    assert sorted(r["instance_id"] for r in rows) == sorted({r["instance_id"] for r in rows})
    assert all(r["status"] == "succeeded" and r["converged"] for r in rows)
    assert all(0 < r["propensity"] <= 1 for r in rows)
    assert {r["policy"] for r in rows} == {"epsilon-greedy"}
    with client.Session() as s:
        assert s.scalar(select(Campaign.n_updates)) == 30
        assert s.scalar(select(func.count()).select_from(Result)) == 30
    assert camp.counts() == {"done": 30}


def test_in_flight_limit_is_respected(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    _campaign(client, max_in_flight=2, n=10)
    sch = InlineScheduler(embedded_settings)
    sch.sweep()
    assert len(sch.published) == 2  # only two decided before any feedback
    sch.feed(execute(sch.published.pop(0), "w"))
    sch.step()
    assert len(sch.published) == 2  # one result freed one slot


def test_duplicate_and_stale_results_count_once(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    _campaign(client, max_in_flight=1, n=3)
    sch = InlineScheduler(embedded_settings)
    sch.sweep()
    payload = sch.published.pop(0)
    result = execute(payload, "w")
    sch.feed(result)
    sch.feed(dict(result))  # the same result delivered twice in one burst
    sch.step()
    sch.feed(dict(result))  # and once more later (a redelivery)
    sch.feed({**result, "attempt": 7})  # an attempt that is not the trial's
    sch.step()
    with client.Session() as s:
        assert s.scalar(select(func.count()).select_from(Result)) == 1
        assert s.scalar(select(Campaign.n_updates)) == 1
    assert sch.metrics.counters["duplicate_results"] == 3  # all but the first


def test_restart_restores_policy_state_from_snapshot_plus_results(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path, snapshot_every=7, snapshot_seconds=0)
    client = Client(settings=settings)
    camp = _campaign(client, n=25)
    live = InlineScheduler(settings)
    live.run_until_idle()
    live_state = live.runtimes[camp.id].policy.get_state()
    with client.Session() as s:
        assert s.scalar(select(func.count()).select_from(PolicySnapshot)) == 3  # 7, 14, 21
        restored = load_runtime(s, camp.id)
    assert restored.policy.get_state() == live_state
    ctx = np.array([0.05])
    for key in range(50):
        assert restored.policy.choose(ctx, key) == live.runtimes[camp.id].policy.choose(ctx, key)


def test_outbox_publishes_committed_but_unpublished_decisions(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    _campaign(client, max_in_flight=2, n=4)
    dead = InlineScheduler(embedded_settings)
    dead.fail_sends = 1_000  # died before publishing
    dead.sweep()
    with client.Session() as s:
        assert (
            s.scalar(select(func.count()).select_from(Trial).where(Trial.published_at.is_(None)))
            == 2
        )
    fresh = InlineScheduler(embedded_settings)
    fresh.sweep()
    assert len(fresh.published) == 2
    fresh.run_until_idle()
    with client.Session() as s:
        assert (
            s.scalar(select(func.count()).select_from(Instance).where(Instance.status == "done"))
            == 4
        )
        assert s.scalar(select(func.count()).select_from(Trial)) == 4


def test_failed_trial_is_recorded_and_the_campaign_goes_on(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    camp = _campaign(client, max_in_flight=1, n=3)
    sch = InlineScheduler(embedded_settings)
    sch.sweep()
    bad = dict(sch.published.pop(0))
    bad["spec"] = {"system": {"generator": "nope"}}
    sch.feed(execute(bad, "w"))
    sch.step()
    sch.run_until_idle()
    rows = camp.results()
    assert [r["status"] for r in rows] == ["failed", "succeeded", "succeeded"]
    assert "system.generator" in rows[0]["error"]


def test_trial_results_view_has_the_documented_columns(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    _campaign(client, n=2)
    InlineScheduler(embedded_settings).run_until_idle()
    with client.engine.connect() as c:
        cols = set(c.execute(text("SELECT * FROM trial_results")).keys())
    assert {
        "campaign",
        "instance_id",
        "trial_id",
        "context",
        "arm",
        "policy",
        "propensity",
        "status",
        "iterations",
        "converged",
        "residual",
        "latency_ms",
        "error",
        "worker",
        "created_at",
        "started_at",
        "finished_at",
        "quality",
    } <= cols


def test_solve_returns_the_solution(embedded_settings: Settings) -> None:
    import threading

    client = Client(settings=embedded_settings)
    camp = client.create_campaign(
        "sim", "sor", {"omega": [1.5]}, policy="fixed", context_features=["shift"]
    )
    sch = InlineScheduler(embedded_settings)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            sch.sweep()
            while sch.published:
                sch.feed(execute(sch.published.pop(0), "w"))
                sch.step()
            stop.wait(0.05)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        system = LinearSystem.laplace2d(5, 0.2, seed=1)
        sol = camp.solve(system, {"shift": 0.2}, timeout=30, tol=1e-10)
    finally:
        stop.set()
        t.join()
    A, b = system.build()
    assert sol.converged and sol.arm == {"omega": 1.5}
    assert np.linalg.norm(A @ sol.x - b) / np.linalg.norm(b) < 1e-10


@pytest.mark.parametrize("policy", ["fixed", "random", "epsilon-greedy"])
def test_each_policy_runs_a_campaign(embedded_settings: Settings, policy: str) -> None:
    client = Client(settings=embedded_settings)
    camp = _campaign(client, policy=policy, n=8)
    InlineScheduler(embedded_settings).run_until_idle()
    rows = camp.results()
    assert len(rows) == 8 and all(r["status"] == "succeeded" for r in rows)
    if policy == "fixed":
        assert all(r["propensity"] == 1.0 and r["arm"] == {"omega": 1.0} for r in rows)


def test_expired_lease_reissues_then_fails_with_the_reason(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path, lease_seconds=0.0, queue_seconds=0.0)
    client = Client(settings=settings)
    camp = _campaign(client, max_in_flight=1, n=2, max_attempts=2)
    sch = InlineScheduler(settings)
    sch.sweep()  # decides and publishes instance 0 (attempt 1) ...
    lost = sch.published.pop(0)  # ... whose message is then lost
    sch.sweep()  # lease ran out: re-issued as attempt 2
    assert [p["attempt"] for p in sch.published] == [2]
    sch.published.clear()  # attempt 2 is lost too
    sch.sweep()  # max_attempts reached: failed with the reason; the campaign goes on
    sch.feed(execute(lost, "late-worker"))  # a late result of attempt 1 is fenced off
    sch.step()
    with client.Session() as s:
        assert s.scalar(select(func.count()).select_from(Result)) == 0
    settings2 = Settings(home=tmp_path, lease_seconds=300.0)
    InlineScheduler(settings2).run_until_idle()
    rows = camp.results()
    assert [r["status"] for r in rows] == ["failed", "succeeded"]
    assert "no result after 2 attempt(s)" in rows[0]["error"]


def test_sql_statements_per_decided_trial_do_not_grow_with_history(
    embedded_settings: Settings,
) -> None:
    counts = statements_per_step(embedded_settings)
    assert len(counts) == 2 and counts[0] == counts[1]  # constant, not growing with history


def test_a_burst_in_chunks_is_decided_once_on_the_embedded_default(
    embedded_settings: Settings,
) -> None:
    """SQLite too: chunks before the last are written on the decision writer thread while
    the next chunk is chosen; every instance is decided once, in order."""
    client = Client(settings=embedded_settings)
    camp = client.create_campaign(
        "burst", "noop", [{"cost": 1.0}, {"cost": 2.0}], context_features=["x"], max_in_flight=40
    )
    camp.submit_many([(None, {"x": float(i)}) for i in range(40)])
    sched = InlineScheduler(embedded_settings, decision_chunk=8)
    sched.sweep()
    order = [p["instance"] for p in sched.published]
    assert len(order) == 40 and order == sorted(set(order))
    with client.Session() as s:
        per = s.execute(select(Trial.instance_id, func.count()).group_by(Trial.instance_id)).all()
    assert len(per) == 40 and {n for _i, n in per} == {1}
    sched.run_until_idle(max_rounds=200)
    assert camp.counts() == {"done": 40}
    sched.decider.close()
