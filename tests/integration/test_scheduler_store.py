"""The scheduler's store layer: one contract, run against both backends (the embedded SQLite
default and the PostgreSQL production runs), so the set-based PostgreSQL statements and the
portable ones are held to the same behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.client import Client
from app.config import Settings
from app.scheduler.store import PostgresStore, SchedulerStore, store_for
from app.scheduler.store.base import TRIAL_FIELDS
from app.scheduler.store.postgres import TRIAL_COLUMNS
from models import BlobRef, Campaign, Instance, PolicySnapshot, Result, Trial, TrialEvent
from models.states import TrialEventKind


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Client, Any]]:
    if request.param == "sqlite":
        settings = Settings(home=tmp_path / "home")
    else:
        url = request.getfixturevalue("pg_url")
        settings = Settings(home=tmp_path / "home", database_url=url)
    client = Client(settings=settings)
    camp = client.create_campaign("c", "noop", {"cost": [1.0, 2.0, 3.0]})
    camp.submit_many([(None, {}) for _ in range(4)])
    yield client, camp
    client.close()


def _at(seconds: float = 0.0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _trial(cid: int, iid: int, arm_id: int, n: int) -> dict[str, Any]:
    return {
        "uuid": f"t-{n}",
        "campaign_id": cid,
        "instance_id": iid,
        "arm_id": arm_id,
        "arm_index": n % 3,
        "propensity": 0.5,
        "policy_name": "p",
        "policy_version": "1",
        "reason": "r",
        "state": "queued",
        "attempt": 1,
        "created_at": _at(),
        "device_class": None,
        "budget": None,
        "budget_unit": None,
        "published_at": None,
        "started_at": None,
        "lease_expires_at": None,
    }


def _decide(client: Client, store: SchedulerStore, cid: int, n: int) -> list[Any]:
    with client.Session() as s, s.begin():
        _camp, arms = store.campaign_with_arms(s, cid)
        pending = store.pending_instances(s, cid, n)
        store.record_decisions(
            s, [_trial(cid, p.id, arms[k % 3].id, k) for k, p in enumerate(pending)]
        )
    return pending


def test_both_backends_write_the_same_trial_columns() -> None:
    assert tuple(c for c, _t in TRIAL_COLUMNS) == TRIAL_FIELDS


def test_store_matches_the_dialect(backend: tuple[Client, Any]) -> None:
    client, _camp = backend
    store = store_for(client.engine)
    assert isinstance(store, PostgresStore) == (client.engine.dialect.name == "postgresql")
    assert store.pg == isinstance(store, PostgresStore)


def test_decisions_take_pending_instances_oldest_first(backend: tuple[Client, Any]) -> None:
    client, camp = backend
    store = store_for(client.engine)
    with client.Session() as s:
        assert store.campaign_id(s, "c") == camp.id
        assert store.campaign_id(s, "nope") is None
        assert store.campaigns_with_pending(s) == [camp.id]
        camp_row, arms = store.campaign_with_arms(s, camp.id)
        assert [a.index for a in arms] == [0, 1, 2] and camp_row.name == "c"
        with pytest.raises(LookupError):
            store.campaign_with_arms(s, camp.id + 99)
    pending = _decide(client, store, camp.id, 3)
    assert [p.seq for p in pending] == [0, 1, 2]
    with client.Session() as s, s.begin():
        assert [p.seq for p in store.pending_instances(s, camp.id, 10)] == [3]
        assert store.open_trial_count(s, camp.id) == 3 and store.open_trial_count(s) == 3
        store.set_contexts(s, [{"id": pending[0].id, "context": {"device": 1.0}}])
        store.set_contexts(s, [])
    with client.Session() as s:
        statuses = dict(s.execute(select(Instance.seq, Instance.status)).all())
        assert statuses == {0: "decided", 1: "decided", 2: "decided", 3: "pending"}
        assert s.get(Instance, pending[0].id).context == {"device": 1.0}  # type: ignore[union-attr]


def test_outbox_until_marked_published(backend: tuple[Client, Any]) -> None:
    client, camp = backend
    store = store_for(client.engine)
    _decide(client, store, camp.id, 2)
    with client.Session() as s, s.begin():
        assert [t.uuid for t in store.unpublished_trials(s, 10)] == ["t-0", "t-1"]
        store.mark_published(s, ["t-0"], _at(), _at(60))
        store.mark_published(s, [], _at(), _at(60))
    with client.Session() as s:
        assert [t.uuid for t in store.unpublished_trials(s, 10)] == ["t-1"]
        row = s.scalar(select(Trial).where(Trial.uuid == "t-0"))
        assert row is not None and row.published_at is not None


def test_results_finish_trials_and_count_updates(backend: tuple[Client, Any]) -> None:
    client, camp = backend
    store = store_for(client.engine)
    _decide(client, store, camp.id, 3)
    with client.Session() as s, s.begin():
        trials = store.trials_for_results(s, ["t-2", "t-0", "unknown"])
        assert sorted(t.uuid for t in trials) == ["t-0", "t-2"]
        by_uuid = {t.uuid: t for t in trials}
        results, finished, statuses = [], [], []
        for u, ok in (("t-2", True), ("t-0", False)):
            t = by_uuid[u]
            results.append(
                {
                    "trial_id": t.id,
                    "campaign_id": camp.id,
                    "attempt": 1,
                    "status": "succeeded" if ok else "failed",
                    "cost": 2.5 if ok else None,
                    "iterations": 7,
                    "converged": ok,
                    "residual": 1e-9,
                    "latency_ms": 1.0,
                    "quality": None,
                    "device": "cpu",
                    "worker": "w",
                    "error": None if ok else "boom",
                    "metrics": {"k": 1},
                    "outputs": {"x": {"sha256": "ab" * 32, "nbytes": 80}} if ok else None,
                    "applied": ok,
                    "censored": False,
                    "started_at": _at(-1),
                    "finished_at": _at(),
                    "recorded_at": _at(),
                }
            )
            finished.append(
                {
                    "id": t.id,
                    "state": "succeeded" if ok else "failed",
                    "worker": "w",
                    "started_at": _at(-1),
                    "finished_at": _at(),
                    "error": None if ok else "boom",
                }
            )
            statuses.append({"id": t.instance_id, "status": "done" if ok else "failed"})
        links = [
            {
                "trial_id": by_uuid["t-2"].id,
                "sha256": "ab" * 32,
                "nbytes": 80,
                "campaign_id": camp.id,
            }
        ]
        ids = store.record_results(s, results, finished, statuses, {camp.id: 1}, links)
        assert store.record_results(s, [], [], [], {}) == []
    with client.Session() as s:
        got = {r.id: r for r in s.scalars(select(Result))}
        assert [got[i].trial_id for i in ids] == [by_uuid["t-2"].id, by_uuid["t-0"].id]
        assert got[ids[0]].metrics == {"k": 1} and got[ids[1]].error == "boom"
        assert s.scalar(select(Campaign.n_updates)) == 1
        states = dict(s.execute(select(Trial.uuid, Trial.state)).all())
        assert states == {"t-0": "failed", "t-1": "queued", "t-2": "succeeded"}
        assert s.scalar(select(BlobRef.result_id).where(BlobRef.result_id.is_not(None))) == ids[0]
        assert store.open_trial_count(s, camp.id) == 1
        applied = store.applied_results_after(s, camp.id, 0)
        assert [(r[0], r[1], r[2]) for r in applied] == [(ids[0], 2.5, 2)]
        assert store.applied_results_after(s, camp.id, ids[0]) == []
    with client.Session() as s, s.begin():
        store.quarantine(s, camp.id, ids[0], "quarantined: bad")
    with client.Session() as s:
        assert s.get(Result, ids[0]).applied is False  # type: ignore[union-attr]
        assert s.scalar(select(Trial.error).where(Trial.uuid == "t-2")) == "quarantined: bad"
        assert s.scalar(select(Campaign.n_updates)) == 0
        assert store.applied_results_after(s, camp.id, 0) == []


def test_leases_renew_expire_reissue_and_fail(backend: tuple[Client, Any]) -> None:
    client, camp = backend
    store = store_for(client.engine)
    _decide(client, store, camp.id, 3)
    with client.Session() as s, s.begin():
        store.mark_published(s, ["t-0", "t-1", "t-2"], _at(-10), _at(-5))  # leases run out
        store.renew_lease(s, "t-1", 1, "w1", _at(60))
        store.renew_lease(s, "t-2", 9, "w1", _at(60))  # not its attempt: ignored
    with client.Session() as s, s.begin():
        expired = store.expired_trials(s, _at(), 10)
        assert sorted(e.uuid for e in expired) == ["t-0", "t-2"]
        e0 = next(e for e in expired if e.uuid == "t-0")
        e2 = next(e for e in expired if e.uuid == "t-2")
        assert e0.seq == 0 and e0.attempt == 1
        store.reissue(s, e0.id, 2)
        store.add_event(s, e0, TrialEventKind.lease_expired, "re-issued as attempt 2", _at())
        store.fail_trial(s, e2.id, e2.instance_id, "no result", _at())
        store.add_event(s, e2, TrialEventKind.lease_failed, "no result", _at())
    with client.Session() as s:
        rows = {t.uuid: t for t in s.scalars(select(Trial))}
        assert (rows["t-0"].state, rows["t-0"].attempt, rows["t-0"].published_at) == (
            "queued",
            2,
            None,
        )
        assert (rows["t-1"].state, rows["t-1"].worker) == ("running", "w1")
        assert (rows["t-2"].state, rows["t-2"].error) == ("failed", "no result")
        assert s.get(Instance, rows["t-2"].instance_id).status == "failed"  # type: ignore[union-attr]
        assert sorted(s.scalars(select(TrialEvent.event))) == ["lease_expired", "lease_failed"]
        assert [t.uuid for t in store.unpublished_trials(s, 10)] == ["t-0"]
        assert store.expired_trials(s, _at(), 10) == []


def test_snapshots_and_workers(backend: tuple[Client, Any]) -> None:
    client, camp = backend
    store = store_for(client.engine)
    with client.Session() as s, s.begin():
        assert store.latest_snapshot(s, camp.id) is None
        for n in (1, 2):
            store.add_snapshot(
                s,
                PolicySnapshot(
                    campaign_id=camp.id,
                    policy_name="p",
                    policy_version="1",
                    n_updates=n,
                    last_result_id=n,
                    state={"n": n},
                ),
            )
        assert store.save_worker(s, "w1", "cpu-x", {"type": "cpu", "slots": 2}, _at(-100))
    with client.Session() as s, s.begin():
        snap = store.latest_snapshot(s, camp.id)
        assert snap is not None and snap.state == {"n": 2}
        assert store.workers_seen_since(s, _at(-10)) == []
        assert not store.save_worker(s, "w1", "cpu-y", {"type": "cpu", "slots": 4}, _at())
    with client.Session() as s:
        (w,) = store.workers_seen_since(s, _at(-10))
        assert (w.name, w.device_class, w.profile["slots"]) == ("w1", "cpu-y", 4)
        assert s.scalar(select(func.count()).select_from(PolicySnapshot)) == 2


def test_decisions_wake_their_askers_at_commit_and_a_fenced_one_wakes_none(
    pg_url: str, tmp_path: Path
) -> None:
    """The askers' notices go in the decision's own statement: delivered at its commit,
    never before it, and never for a decision that was fenced (rolled back)."""
    import psycopg

    from app.scheduler.errors import DecisionFenced
    from tasks.messages import ASK_CHANNEL

    client = Client(settings=Settings(home=tmp_path / "home", database_url=pg_url))
    camp = client.create_campaign("c", "noop", {"cost": [1.0, 2.0, 3.0]})
    camp.submit_many([(None, {}) for _ in range(3)])
    store = store_for(client.engine)
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {ASK_CHANNEL}")
        with client.Session() as s, s.begin():
            _row, arms = store.campaign_with_arms(s, camp.id)
            pending = store.pending_instances(s, camp.id, 2)
            trials = [_trial(camp.id, p.id, arms[0].id, k) for k, p in enumerate(pending)]
            store.record_decisions(s, trials, [f"asked {t['uuid']}" for t in trials])
            assert list(listener.notifies(timeout=0.3)) == []  # not before the commit
        got = sorted(n.payload for n in listener.notifies(timeout=2.0, stop_after=2))
        assert got == ["asked t-0", "asked t-1"]
        with pytest.raises(DecisionFenced), client.Session() as s, s.begin():
            again = _trial(camp.id, pending[0].id, arms[0].id, 9)  # decided already
            store.record_decisions(s, [again], ["asked t-9"])
        assert list(listener.notifies(timeout=0.5)) == []
    client.close()


def test_values_cross_the_statement_exactly(backend: tuple[Client, Any]) -> None:
    """A decision's and a result's values land as given: floats to the last bit, timestamps
    to the microsecond, quotes and non-ASCII text, and (PostgreSQL, which stores them) a
    non-finite residual; NaN in a JSON column becomes null on both."""
    client, camp = backend
    store = store_for(client.engine)
    at = datetime(2026, 12, 6, 17, 30, 1, 123457, tzinfo=UTC)
    with client.Session() as s, s.begin():
        _camp, arms = store.campaign_with_arms(s, camp.id)
        (p,) = store.pending_instances(s, camp.id, 1)
        trial = _trial(camp.id, p.id, arms[0].id, 0)
        trial.update(
            propensity=0.1 + 0.2,
            reason='q"\\é{',
            created_at=at,
            budget=1e-300,
            budget_unit="matvec",
        )
        store.record_decisions(s, [trial])
    with client.Session() as s, s.begin():
        (t,) = store.trials_for_results(s, ["t-0"])
        residual = float("nan") if store.pg else 1e-12
        result = {
            "trial_id": t.id,
            "campaign_id": camp.id,
            "attempt": 1,
            "status": "succeeded",
            "cost": 1 / 3,
            "iterations": 2**31 - 1,
            "converged": False,
            "residual": residual,
            "latency_ms": float("inf") if store.pg else 5e-324,
            "quality": None,
            "device": "cpu",
            "worker": "w\u00e9",
            "error": None,
            "metrics": {"nan": float("nan"), "s": "a\"b'c"},
            "outputs": None,
            "applied": True,
            "censored": True,
            "started_at": at,
            "finished_at": at,
            "recorded_at": at,
        }
        finish = {
            "id": t.id,
            "state": "succeeded",
            "worker": "w\u00e9",
            "started_at": at,
            "finished_at": at,
            "error": None,
        }
        store.record_results(s, [result], [finish], [], {camp.id: 1})
    with client.Session() as s:
        row = s.scalars(select(Trial).where(Trial.uuid == "t-0")).one()
        assert row.propensity == 0.1 + 0.2 and row.reason == 'q"\\é{' and row.budget == 1e-300
        assert row.budget_unit == "matvec"
        assert row.created_at.replace(tzinfo=UTC) == at and row.worker == "w\u00e9"
        assert row.finished_at.replace(tzinfo=UTC) == at  # type: ignore[union-attr]
        r = s.scalars(select(Result)).one()
        assert r.cost == 1 / 3 and r.iterations == 2**31 - 1 and r.censored is True
        assert r.metrics == {"nan": None, "s": "a\"b'c"}
        if store.pg:
            assert r.residual != r.residual and r.latency_ms == float("inf")
        else:
            assert r.residual == 1e-12 and r.latency_ms == 5e-324
