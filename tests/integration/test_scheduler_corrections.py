"""Regression tests for scheduler defects found in review, on SQLite and on PostgreSQL (the
backend production uses): stranded re-issued trials, policy bugs retried as if the database
had failed, and non-finite floats in JSON columns."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, text

from app.client import Client
from app.config import Settings
from app.policies import registry
from app.policies.epsilon_greedy import EpsilonGreedyPolicy
from app.scheduler.runtime import load_runtime
from models import Campaign, PolicySnapshot, Result, Trial
from tasks.messages import PROTOCOL
from tasks.plugins import POLICIES_GROUP
from tests.conftest import drop_pg_database, fresh_pg_database, pg_url_of
from tests.inline import InlineScheduler
from tests.plugins import installed


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    home = tmp_path / "home"
    if request.param == "sqlite":
        yield Settings(home=home, sweep_seconds=1.0, snapshot_every=1, snapshot_seconds=0.0)
        return
    template = request.getfixturevalue("pg_template")
    name = fresh_pg_database(template)
    try:
        yield Settings(
            home=home,
            database_url=pg_url_of(name),
            sweep_seconds=1.0,
            snapshot_every=1,
            snapshot_seconds=0.0,
        )
    finally:
        drop_pg_database(name)


def _one_result_per_instance(client: Client, camp_id: int) -> None:
    with client.Session() as s:
        rows = s.execute(
            select(Trial.instance_id, func.count())
            .join(Result, Result.trial_id == Trial.id)
            .where(Trial.campaign_id == camp_id, Result.status == "succeeded")
            .group_by(Trial.instance_id)
        ).all()
    assert rows and all(n == 1 for _i, n in rows)


# ---------------------------------------------------------------- 1. stranded re-issued trials
def _lose_running_trials(sch: InlineScheduler) -> list[dict[str, Any]]:
    """Decide, start the trials (heartbeats mark them running), then lose their messages."""
    sch.sweep()
    lost, sch.published = sch.published, []
    for p in lost:
        sch.feed(
            {
                "v": PROTOCOL,
                "type": "heartbeat",
                "trial": p["trial"],
                "attempt": p["attempt"],
                "worker": "w",
            }
        )
    sch.step()
    return lost


def test_reissue_whose_publish_fails_is_published_by_the_outbox(settings: Settings) -> None:
    settings = dataclasses.replace(settings, lease_seconds=0.3)
    client = Client(settings=settings)
    camp = client.create_campaign(
        "strand", "noop", [{"cost": 1.0}, {"cost": 2.0}], context_features=["x"], max_in_flight=2
    )
    camp.submit_many([(None, {"x": float(i)}) for i in range(5)])
    sch = InlineScheduler(settings)
    lost = _lose_running_trials(sch)
    assert len(lost) == 2
    time.sleep(0.5)  # the leases run out
    # the broker is down when the trials are re-issued (the outbox's probe of the next
    # message fails too: an outage, not one refused message)
    sch.fail_sends = 2
    sch.reconciler.expire_leases()
    assert sch.published == []
    with client.Session() as s:
        states = s.execute(select(Trial.state, Trial.attempt, Trial.lease_expires_at)).all()
    # open and unleased means queued and unpublished: the outbox owns it
    assert all(st == "queued" and a == 2 and lease is None for st, a, lease in states)
    sch.run_until_idle()
    assert camp.counts() == {"done": 5}
    _one_result_per_instance(client, camp.id)
    client.close()


def test_reissue_marks_dropped_by_a_failed_transaction_are_recovered(settings: Settings) -> None:
    settings = dataclasses.replace(settings, lease_seconds=0.3)
    client = Client(settings=settings)
    camp = client.create_campaign(
        "marks", "noop", [{"cost": 1.0}], context_features=["x"], max_in_flight=2
    )
    camp.submit_many([(None, {"x": float(i)}) for i in range(4)])
    sch = InlineScheduler(settings)
    _lose_running_trials(sch)
    time.sleep(0.5)
    sch.reconciler.expire_leases()  # re-issued and published; published_at waits in _unmarked
    assert len(sch.published) == 2 and sch.outbox.unmarked
    sch.database_failed(RuntimeError("connection reset"), [])  # drops the marks
    sch.published.clear()  # and the re-issued messages are lost too
    sch.run_until_idle()
    assert camp.counts() == {"done": 4}
    _one_result_per_instance(client, camp.id)
    client.close()


# ---------------------------------------------------------------- 2. policy bugs quarantined
class RaisingPolicy(EpsilonGreedyPolicy):
    """A policy with a bug: its update raises on one context, its choice on another."""

    name = "test-raising"

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        if float(context[0]) == 3.0:
            raise ValueError("bad context 3")
        super()._update(context, arm, cost)

    def choose(self, context: np.ndarray, key: int):  # type: ignore[no-untyped-def]
        if float(context[0]) == 5.0:
            raise ZeroDivisionError("choose bug")
        return super().choose(context, key)


def test_a_raising_policy_is_quarantined_and_other_campaigns_go_on(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entry = {POLICIES_GROUP: {RaisingPolicy.name: f"{__name__}:RaisingPolicy"}}
    with installed(tmp_path, "raising-policy", entry):
        _raising_policy_quarantined(settings, caplog)


def _raising_policy_quarantined(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(settings=settings)
    arms = [{"cost": 1.0}, {"cost": 2.0}]
    bad = client.create_campaign(
        "bad", "noop", arms, policy="test-raising", context_features=["x"], max_in_flight=3
    )
    good = client.create_campaign("good", "noop", arms, context_features=["x"], max_in_flight=3)
    for camp in (bad, good):
        camp.submit_many([(None, {"x": float(i)}) for i in range(8)])
    sch = InlineScheduler(settings)
    with caplog.at_level(logging.ERROR, logger="banditq.scheduler"):
        sch.run_until_idle(max_rounds=200)
    assert bad.counts() == {"done": 8} and good.counts() == {"done": 8}
    assert sch.metrics.counters["policy_errors"] == 2  # one update, one choice
    assert any("campaign bad" in r.getMessage() for r in caplog.records)
    rows = {r["context"]["x"]: r for r in bad.results()}
    assert "quarantined" in rows[3.0]["error"] and "bad context 3" in rows[3.0]["error"]
    assert all(rows[x]["error"] is None for x in rows if x != 3.0)
    with client.Session() as s:
        applied = dict(
            s.execute(
                select(Result.campaign_id, func.count())
                .where(Result.applied.is_(True))
                .group_by(Result.campaign_id)
            ).all()
        )
        assert applied == {bad.id: 7, good.id: 8}
        assert s.scalar(select(Campaign.n_updates).where(Campaign.id == bad.id)) == 7
        reasons = s.scalars(select(Trial.reason).where(Trial.campaign_id == bad.id)).all()
        assert reasons.count("fallback:policy-error") == 1
        # the state in memory equals a rebuild from the database (quarantined result skipped)
        rebuilt = load_runtime(s, bad.id)
    live = sch.runtimes.get(bad.id) or rebuilt
    assert live.policy.n_updates == rebuilt.policy.n_updates == 7
    client.close()


# ---------------------------------------------------------------- 3. NaN / Infinity in JSON
def _policy_states(settings: Settings) -> Iterator[tuple[str, Any]]:
    """Every registered policy: fresh, after updates (with zero, huge and repeated costs), and
    wrapped in a guard, plus constrained-ts warm-started from nothing usable."""
    arms = np.linspace(1.0, 1.9, 4)[:, None]
    for name in registry.policy_names():
        if name == "default":
            continue
        cfg: dict[str, Any] = {}
        if name == "fixed":
            cfg = {"arm": 1}
        policy = registry.make_policy(name, 4, 2, arms=arms, seed=1, config=cfg)
        yield f"{name}/fresh", policy
        rng = np.random.default_rng(0)
        for i in range(12):
            quality = 0.999 if name == "constrained-ts" and i % 3 == 0 else None
            policy.update(rng.random(2), i % 4, [0.0, 1.0, 1e12, 3.0][i % 4], quality)
        yield f"{name}/updated", policy
        guarded = registry.make_policy(
            name,
            4,
            2,
            arms=arms,
            seed=1,
            config={**cfg, "guard": {"baseline_arm": 0, "tolerance": 0.1}},
        )
        yield f"{name}/guard-fresh", guarded
        guarded.update(np.zeros(2), 0, 5.0)
        yield f"{name}/guard-updated", guarded
    warm = registry.make_policy(
        "constrained-ts", 4, 2, seed=1, config={"quality_floor": 0.99, "reference_arm": 0}
    )
    yield "constrained-ts/warm-from-nothing", warm


def test_every_policy_state_round_trips_through_the_database(settings: Settings) -> None:
    client = Client(settings=settings)
    camp = client.create_campaign("snap", "noop", [{"cost": 1.0}], context_features=["x"])
    states = list(_policy_states(settings))
    with client.Session() as s, s.begin():
        for label, policy in states:
            s.add(
                PolicySnapshot(
                    campaign_id=camp.id,
                    policy_name=label,
                    policy_version=policy.version,
                    n_updates=policy.n_updates,
                    last_result_id=0,
                    state=policy.get_state(),
                )
            )
    with client.Session() as s:
        stored = dict(s.execute(select(PolicySnapshot.policy_name, PolicySnapshot.state)).all())
    assert set(stored) == {label for label, _p in states}
    ctx = np.array([0.3, 0.7])
    for label, policy in states:
        fresh = _fresh_like(label, policy)
        fresh.set_state(stored[label])
        for key in range(5):
            assert fresh.choose(ctx, key) == policy.choose(ctx, key), label
    client.close()


def _fresh_like(label: str, policy: Any) -> Any:
    name = label.split("/")[0]
    arms = None if "warm-from-nothing" in label else np.linspace(1.0, 1.9, 4)[:, None]
    cfg: dict[str, Any] = {"arm": 1} if name == "fixed" else {}
    if "warm-from-nothing" in label:
        cfg = {"quality_floor": 0.99, "reference_arm": 0}
    if "guard" in label:
        cfg["guard"] = {"baseline_arm": 0, "tolerance": 0.1}
    return registry.make_policy(name, 4, 2, arms=arms, seed=1, config=cfg)


def test_non_finite_metrics_and_outputs_are_stored_as_null(settings: Settings) -> None:
    client = Client(settings=settings)
    camp = client.create_campaign("nan", "noop", [{"cost": 1.0}], context_features=["x"])
    camp.submit(None, {"x": 1.0})
    sch = InlineScheduler(settings)
    sch.sweep()
    (payload,) = sch.published
    sch.published.clear()
    sch.feed(
        {
            "v": PROTOCOL,
            "type": "result",
            "trial": payload["trial"],
            "attempt": payload["attempt"],
            "status": "succeeded",
            "cost": 1.0,
            "metrics": {"rate": float("nan"), "peak": float("inf"), "ok": 2.5},
            "outputs": {"x": [1.0, float("-inf")]},
        }
    )
    sch.step()
    assert camp.counts() == {"done": 1}
    with client.Session() as s:
        metrics, outputs = s.execute(select(Result.metrics, Result.outputs)).one()
    assert metrics == {"rate": None, "peak": None, "ok": 2.5}
    assert outputs == {"x": [1.0, None]}
    client.close()


# ---------------------------------------------------------------- 5. the workers' devices decide
def _announce(sch: InlineScheduler, worker: str, profile: dict[str, Any], slots: int) -> None:
    from tasks.messages import WorkerAnnouncement

    sch.feed(WorkerAnnouncement.of(worker, profile, slots).to_json())


def test_auto_device_campaigns_are_decided_per_worker_device_class(settings: Settings) -> None:
    """Two device profiles (a CPU worker with 1 slot, a CUDA 9.0 worker with 3): each trial
    is routed to one class, carries that class's device features in its context, and uses
    only arms that class can run; the creating machine's device plays no part."""
    from models import Instance
    from tasks.kinds.accel import AccelArm

    client = Client(settings=settings)
    arms = [
        AccelArm().to_json(),
        AccelArm(dtype="bf16").to_json(),
        AccelArm(dtype="fp16").to_json(),  # CUDA only
        AccelArm(compile="reduce-overhead").to_json(),  # CUDA only
    ]
    camp = client.create_inference_campaign(
        "auto-dev", arms=arms, quality_floor=0.99, device="auto", max_in_flight=40
    )
    with client.Session() as s:
        row = s.get(Campaign, camp.id)
        assert row is not None and row.settings["device"] == "auto"
        assert row.settings["dropped_arms"] == {}  # nothing dropped for the client's device
    camp.submit_texts([[f"text number {i}"] * (1 + i % 3) for i in range(24)], max_length=16)
    sch = InlineScheduler(settings)
    sch.sweep()
    assert sch.published == []  # no worker has announced a device: nothing is decided
    assert camp.counts() == {"pending": 24}
    _announce(sch, "cpu-w", {"type": "cpu", "capability": 0.0, "threads": 8.0}, 1)
    _announce(sch, "gpu-w", {"type": "cuda", "capability": 9.0, "threads": 16.0}, 3)
    sch.step()
    assert len(sch.published) == 24
    by_class: dict[str, list[dict[str, Any]]] = {}
    for p in sch.published:
        by_class.setdefault(p["device_class"], []).append(p)
    assert {k: len(v) for k, v in by_class.items()} == {"cpu": 6, "cuda-9.0": 18}  # 1 : 3
    cuda_only = {AccelArm.parse(a).name for a in arms[2:]}
    assert not {AccelArm.parse(p["arm"]).name for p in by_class["cpu"]} & cuda_only
    with client.Session() as s:
        rows = s.execute(
            select(Trial.device_class, Instance.context, Trial.propensity).join(
                Instance, Instance.id == Trial.instance_id
            )
        ).all()
        workers = {w for (w,) in s.execute(text("SELECT name FROM workers")).all()}
    assert workers == {"cpu-w", "gpu-w"}
    for cls, ctx, propensity in rows:
        cuda = cls == "cuda-9.0"
        assert ctx["device_cuda"] == (1.0 if cuda else 0.0)
        assert ctx["device_capability"] == (9.0 if cuda else 0.0)
        assert ctx["threads"] == (16.0 if cuda else 8.0)
        assert 0.0 < propensity <= 1.0
    # the routing: each class has a queue of its own
    from app.scheduler.taskpublisher import TaskPublisher

    pub = TaskPublisher(sch.broker, settings.queue)
    assert pub._channel_for("cuda-9.0").queue.name == f"{settings.queue}.dev.cuda-9.0"
    pub.close()
    # a restarted scheduler knows the live workers from the database
    sch2 = InlineScheduler(settings)
    sch2.sweep()
    assert set(sch2.devices.classes()) == {"cpu", "cuda-9.0"}
    client.close()


def test_warm_start_from_a_campaign_without_results_snapshots_on_postgresql(
    settings: Settings,
) -> None:
    """The path that failed on PostgreSQL: a warm start from nothing usable leaves
    constrained-ts with ``cheap = nan`` in the snapshot written at campaign creation."""
    client = Client(settings=settings)
    arms = [{"cost": 1.0}, {"cost": 2.0}]
    client.create_campaign("empty-src", "noop", arms, policy="constrained-ts")
    dst = client.create_campaign(
        "warm-dst", "noop", arms, policy="constrained-ts", warm_start_from=["empty-src"]
    )
    with client.Session() as s:
        snap = s.scalars(select(PolicySnapshot).where(PolicySnapshot.campaign_id == dst.id)).one()
        assert snap.state["cheap"] == {"__float__": "nan"}
        rt = load_runtime(s, dst.id)
    assert np.isnan(rt.policy.cheap)  # type: ignore[attr-defined]
    dst.submit(None, {})
    InlineScheduler(settings).run_until_idle()
    assert dst.counts() == {"done": 1}
    client.close()
