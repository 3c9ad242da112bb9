"""Isolation (issue 27, items 1-3) on PostgreSQL, the database production uses: a poison
message, a broken campaign or a misbehaving plugin never stops the scheduler for anyone
else. The real scheduler runs inline (trials executed in this process)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy
from sqlalchemy import func, select, update

from app.client import Client
from app.config import Settings
from app.policies.base import Decision
from app.policies.epsilon_greedy import EpsilonGreedyPolicy
from models import Campaign, DeadLetter, Instance, PolicySnapshot, Result, Trial, TrialEvent
from tasks.errors import InputError
from tasks.kinds.synthetic import NoopKind
from tasks.messages import PROTOCOL
from tasks.plugins import KINDS_GROUP, POLICIES_GROUP
from tests.inline import InlineScheduler
from tests.plugins import installed

ARMS = [{"cost": 1.0}, {"cost": 2.0}, {"cost": 3.0}]


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=pg_url,
        sweep_seconds=1.0,
        snapshot_every=1,
        snapshot_seconds=0.0,
    )


def _healthy(client: Client, n: int = 12, name: str = "healthy") -> Any:
    camp = client.create_campaign(name, "noop", ARMS, context_features=["x"], max_in_flight=2)
    camp.submit_many([(None, {"x": float(i)}) for i in range(n)])
    return camp


def _dead_letters(client: Client) -> list[tuple[str, str]]:
    with client.Session() as s:
        return [(d.source, d.reason) for d in s.scalars(select(DeadLetter).order_by(DeadLetter.id))]


def _status(client: Client, camp_id: int) -> tuple[str, str | None]:
    with client.Session() as s:
        row = s.get(Campaign, camp_id)
        assert row is not None
        return row.status, row.broken_reason


# ------------------------------------------------------------------ 1. poison messages
def _poison(trial: str) -> list[dict[str, Any]]:
    """Messages that each failed a statement before (DataError, over-long values) or that
    identify nothing: every one must be refused or cleaned, none may stall the rest."""
    v = PROTOCOL
    return [
        {"v": v, "type": "wake", "campaign": "nul\x00name"},
        {"v": v, "type": "wake", "campaign": "x" * 5000},
        {"v": v, "type": "heartbeat", "trial": trial, "attempt": 1, "worker": "w\x00"},
        {"v": v, "type": "heartbeat", "trial": trial + "\n", "attempt": 1},
        {"v": v, "type": "heartbeat", "trial": trial, "attempt": 2**40},
        {
            "v": v,
            "type": "worker",
            "worker": "evil",
            "profile": {"type": "cuda", "capability": 1e60},
            "device_class": "cuda-" + "9" * 61 + ".0",
            "slots": 1,
        },
        {
            "v": v,
            "type": "worker",
            "worker": "evil",
            "profile": {"type": "cpu"},
            "device_class": "cpu",
            "slots": 10**12,
        },
        {
            "v": v,
            "type": "result",
            "trial": "not-a-uuid",
            "attempt": 1,
            "status": "succeeded",
            "cost": 1.0,
        },
        {
            "v": v,
            "type": "result",
            "trial": str(uuid.uuid4()),
            "attempt": 1,
            "status": "succeeded",
            "cost": 1.0,
        },  # a forged result for an unknown trial
        {"v": v, "type": "nonsense"},
        {"v": 99, "type": "result"},
        ["not", "an", "object"],
    ]


def _nested(depth: int) -> list[Any]:
    out: list[Any] = [1]
    for _ in range(depth):
        out = [out]
    return out


def test_poison_messages_are_refused_and_the_healthy_campaign_finishes_once(
    settings: Settings,
) -> None:
    client = Client(settings=settings)
    camp = _healthy(client)
    sch = InlineScheduler(settings)
    sch.sweep()
    first = sch.published[0]
    for body in _poison(first["trial"]):
        sch.feed(body)  # type: ignore[arg-type]
    # a result of a real trial whose payload fields would each fail a column
    from workers.run_trial import execute

    sch.published.pop(0)
    result = execute(first, "w")
    result.update(
        iterations=2**40,
        error=None,
        device="d" * 500 + "\x00",
        metrics={"note": "nul\x00", "nan": float("nan"), "deep": _nested(40)},
        outputs={"ref": {"sha256": "a" * 64 + "\n", "kind": "vector"}},
    )
    sch.feed(result)
    sch.step()
    assert sch.run_until_idle(max_rounds=500) > 0
    assert camp.counts() == {"done": 12}
    with client.Session() as s:
        per_instance = s.execute(
            select(Result.trial_id, func.count())
            .where(Result.campaign_id == camp.id)
            .group_by(Result.trial_id)
        ).all()
        assert len(per_instance) == 12 and all(n == 1 for _t, n in per_instance)
        cleaned = s.scalars(select(Result).where(Result.iterations.is_(None))).all()
        assert any(r.metrics.get("note") == "nul\ufffd" for r in cleaned)
    letters = _dead_letters(client)
    # the unknown-trial result is refused by the recorder (counted), the rest dead-lettered
    assert len(letters) == len(_poison(first["trial"])) - 1
    assert all(reason.startswith("a malformed message:") for _s, reason in letters)
    assert sch.metrics.counters["dead_letters"] == len(letters)
    assert sch.metrics.counters["unknown_results"] == 1


class LongReasonPolicy(EpsilonGreedyPolicy):
    """A plugin whose decisions break the trials table's bounds (a 60-character reason), or
    pick arms out of range, by context."""

    name = "test-long-reason"

    def choose(self, context: np.ndarray, key: int) -> Decision:
        x = float(context[0])
        if x == 1.0:
            return Decision(0, 1.0, reason="r" * 60)
        if x == 2.0:
            return Decision(-1, 1.0)  # a negative index would silently pick the last arm
        if x == 3.0:
            return Decision(len(ARMS), 1.0)
        if x == 4.0:
            return Decision(0, 0.0)
        return super().choose(context, key)


def test_a_policy_returning_invalid_decisions_falls_back_uniformly(
    settings: Settings, tmp_path: Path
) -> None:
    entry = {POLICIES_GROUP: {LongReasonPolicy.name: f"{__name__}:LongReasonPolicy"}}
    with installed(tmp_path / "plug", "long-reason", entry):
        client = Client(settings=settings)
        bad = client.create_campaign(
            "bad", "noop", ARMS, policy="test-long-reason", context_features=["x"]
        )
        bad.submit_many([(None, {"x": float(i)}) for i in range(6)])
        good = _healthy(client)
        sch = InlineScheduler(settings)
        sch.run_until_idle(max_rounds=500)
    assert bad.counts() == {"done": 6} and good.counts() == {"done": 12}
    rows = {r["context"]["x"]: r for r in bad.results()}
    for x in (1.0, 2.0, 3.0, 4.0):
        assert rows[x]["reason"] == "fallback:policy-error"
        assert rows[x]["propensity"] == pytest.approx(1 / 3)
    assert sch.metrics.counters["policy_errors"] == 4


# ------------------------------------------------------------------ 2. broken campaigns
@pytest.mark.parametrize(
    ("column", "value", "why"),
    [
        ("settings", {"monitor_fraction": "half"}, "settings.monitor_fraction"),
        ("settings", {"limits": {"max_seconds": 1e300}}, "settings.limits.max_seconds"),
        ("settings", {"surprise": 1}, "settings.surprise"),
        ("kind", "kind-not-installed-here", "kind-not-installed-here"),
        ("policy", "policy-not-installed-here", "policy-not-installed-here"),
        ("policy_config", {"knots": 10**9}, "knots"),
    ],
)
def test_a_campaign_broken_in_the_database_stops_alone(
    settings: Settings, column: str, value: Any, why: str
) -> None:
    """Rows written by hand (or by an older client) that the scheduler cannot serve: that
    campaign is marked broken with the reason, every other campaign finishes."""
    client = Client(settings=settings)
    bad = client.create_campaign("bad", "noop", ARMS, context_features=["x"])
    bad.submit_many([(None, {"x": float(i)}) for i in range(4)])
    good = _healthy(client)
    with client.Session() as s, s.begin():
        s.execute(update(Campaign).where(Campaign.id == bad.id).values({column: value}))
    sch = InlineScheduler(settings)
    t0 = time.monotonic()
    sch.run_until_idle(max_rounds=500)
    assert time.monotonic() - t0 < 60
    assert good.counts() == {"done": 12}
    status, reason = _status(client, bad.id)
    assert status == "broken" and reason is not None and why in reason
    assert bad.counts() == {"pending": 4}
    assert sch.metrics.counters["campaigns_broken"] == 1
    # visible where an operator looks: status, the dashboard's list, a view
    from app.client.status import campaigns_overview
    from app.report.data import campaign_list

    over = {r["campaign"]: r for r in campaigns_overview(client)}
    assert over["bad"]["state"] == "broken" and why in over["bad"]["broken_reason"]
    assert over["healthy"]["state"] == "active"
    listed = {r["campaign"]: r for r in campaign_list(client.engine)}
    assert listed["bad"]["status"].startswith("broken: ") and why in listed["bad"]["status"]
    with client.engine.connect() as c:
        view = c.execute(sqlalchemy.text("SELECT campaign, reason FROM broken_campaigns")).all()
    assert [v[0] for v in view] == ["bad"] and why in view[0][1]
    # a restarted scheduler skips it at once
    again = InlineScheduler(settings)
    again.run_until_idle(max_rounds=50)
    assert bad.counts() == {"pending": 4}


class UpdateRaisesPolicy(EpsilonGreedyPolicy):
    """Every update raises: the first result of a burst is quarantined, the reload replays
    the next and raises again (the crash loop the issue reproduced)."""

    name = "test-update-raises"

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        raise RuntimeError("update bug")


def test_results_whose_update_raises_break_that_campaign_not_the_scheduler(
    settings: Settings, tmp_path: Path
) -> None:
    entry = {POLICIES_GROUP: {UpdateRaisesPolicy.name: f"{__name__}:UpdateRaisesPolicy"}}
    with installed(tmp_path / "plug", "update-raises", entry):
        client = Client(settings=settings)
        bad = client.create_campaign(
            "bad",
            "noop",
            ARMS,
            policy="test-update-raises",
            context_features=["x"],
            max_in_flight=4,
        )
        bad.submit_many([(None, {"x": float(i)}) for i in range(8)])
        good = _healthy(client)
        sch = InlineScheduler(settings)
        sch.sweep()
        from workers.run_trial import execute

        mine = [p for p in sch.published if p["campaign"] == "bad"]
        for p in mine:  # two or more results of one campaign in one burst
            sch.feed(execute(p, "w"))
        sch.published = [p for p in sch.published if p["campaign"] != "bad"]
        sch.step()
        sch.run_until_idle(max_rounds=500)
        assert good.counts() == {"done": 12}
        status, reason = _status(client, bad.id)
        assert status == "broken" and reason is not None and "update bug" in reason
        # a restart neither crashes nor applies anything of the broken campaign
        again = InlineScheduler(settings)
        again.run_until_idle(max_rounds=50)
    with client.Session() as s:
        applied = s.scalar(
            select(func.count())
            .select_from(Result)
            .where(Result.campaign_id == bad.id, Result.applied.is_(True))
        )
        recorded = s.scalar(
            select(func.count()).select_from(Result).where(Result.campaign_id == bad.id)
        )
    assert recorded == len(mine) and applied is not None and applied <= len(mine)


def test_a_kind_whose_message_hook_raises_breaks_only_its_campaign(
    settings: Settings, tmp_path: Path
) -> None:
    entry = {KINDS_GROUP: {"test-bad-options": f"{__name__}:BadOptionsKind"}}
    with installed(tmp_path / "plug", "bad-options", entry):
        client = Client(settings=settings)
        bad = client.create_campaign("bad", "test-bad-options", ARMS, context_features=["x"])
        bad.submit_many([(None, {"x": 1.0})])
        good = _healthy(client)
        sch = InlineScheduler(settings)
        sch.run_until_idle(max_rounds=500)
    assert good.counts() == {"done": 12}
    status, reason = _status(client, bad.id)
    assert status == "broken" and reason is not None and "options bug" in reason


class BadOptionsKind(NoopKind):
    """A kind whose per-decision options hook raises."""

    name = "test-bad-options"

    def decision_options(
        self, options: dict[str, Any] | None, monitored: bool
    ) -> dict[str, Any] | None:
        raise RuntimeError("options bug")


def test_huge_limits_are_clamped_not_overflowing(settings: Settings) -> None:
    """The largest limits creation allows: leases stay representable (no OverflowError after
    the messages were sent, which crash-looped the scheduler)."""
    client = Client(settings=settings)
    camp = client.create_campaign(
        "big",
        "noop",
        ARMS,
        context_features=["x"],
        max_trial_seconds=7 * 86400,
        max_in_flight=10_000,
    )
    camp.submit_many([(None, {"x": 1.0}), (None, {"x": 2.0})])
    sch = InlineScheduler(settings)
    assert sch.run_until_idle(max_rounds=50) == 2
    assert camp.counts() == {"done": 2}


def test_snapshots_are_pruned_to_the_last_three(settings: Settings) -> None:
    client = Client(settings=settings)
    camp = _healthy(client, n=10)
    InlineScheduler(settings).run_until_idle(max_rounds=500)
    with client.Session() as s:
        n = s.scalar(
            select(func.count())
            .select_from(PolicySnapshot)
            .where(PolicySnapshot.campaign_id == camp.id)
        )
    assert n is not None and 1 <= n <= 3


# ------------------------------------------------------------------ 3. bounded requests
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"policy_config": {"knots": 10**9}}, "policy_config"),
        ({"policy_config": {"knots": 400}, "context_features": ["x", "y"]}, "policy_config"),
        ({"policy": "lin-ts", "policy_config": {"degree": 10**6}}, "policy_config"),
        ({"arms": {"a": list(range(1000)), "b": list(range(1000))}}, "arms"),
        ({"arms": [{"cost": float(i)} for i in range(200_000)]}, "arms"),
        ({"settings": {"monitor_fraction": "half"}}, "settings.monitor_fraction"),
        ({"settings": {"limits": {"max_seconds": 1e300}}}, "settings.limits.max_seconds"),
        ({"settings": {"surprise": 1}}, "settings.surprise"),
        ({"settings": {"kind_options": {}}}, "settings.kind_options"),
        ({"max_trial_seconds": 9e6}, "max_trial_seconds"),
        ({"max_in_flight": 100_000}, "max_in_flight"),
        ({"max_attempts": 10**6}, "max_attempts"),
        ({"seed": 2**40}, "seed"),
        ({"context_features": "shift"}, "context_features"),
        ({"context_features": [f"f{i}" for i in range(100)]}, "context_features"),
        ({"name": "trailing\n"}, "name"),
    ],
)
def test_unbounded_requests_are_refused_at_creation_naming_the_field(
    settings: Settings, kwargs: dict[str, Any], field: str
) -> None:
    client = Client(settings=settings)
    args: dict[str, Any] = {"name": "c", "kind": "noop", "arms": ARMS, "context_features": ["x"]}
    args.update(kwargs)
    t0 = time.monotonic()
    with pytest.raises(InputError) as err:
        client.create_campaign(**args)
    assert time.monotonic() - t0 < 10  # refused before anything large is allocated
    assert err.value.field.startswith(field)
    with client.Session() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_a_message_the_broker_refuses_does_not_hold_back_the_rest(settings: Settings) -> None:
    """Outbox head-of-line: the refused trial is retried, then failed with the reason; every
    other trial is published and finishes."""
    client = Client(settings=settings)
    camp = _healthy(client, n=8)
    sch = InlineScheduler(settings)
    with client.Session() as s:
        first = s.scalar(select(func.min(Instance.id)).where(Instance.campaign_id == camp.id))
    sch.fake.refuse = lambda m: m.instance == first
    for _ in range(6):
        sch.run_until_idle(max_rounds=500)
    assert camp.counts() == {"done": 7, "failed": 1}
    assert sch.metrics.counters["publish_refused"] == 1
    with client.Session() as s:
        error = s.scalar(select(Trial.error).where(Trial.instance_id == first))
    assert error is not None and "refused its message 3 times" in error
    assert "PRECONDITION_FAILED" in error


# ------------------------------------------------------------------ transient worker failures
FLAKY = {"left": 0}


class FlakyKind(NoopKind):
    """Loses its database connection while ``FLAKY['left']`` > 0 (a store or database blip
    on the worker)."""

    name = "test-flaky"

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Any:
        if FLAKY["left"] > 0:
            FLAKY["left"] -= 1
            raise sqlalchemy.exc.OperationalError(
                "SELECT data FROM store_chunks", {}, Exception("server closed the connection")
            )
        return super().run(spec, arm, options)


@pytest.mark.parametrize(("blips", "outcome"), [(1, "done"), (5, "failed")])
def test_transient_worker_failures_are_retried_within_max_attempts(
    settings: Settings, tmp_path: Path, blips: int, outcome: str
) -> None:
    entry = {KINDS_GROUP: {"test-flaky": f"{__name__}:FlakyKind"}}
    with installed(tmp_path / "plug", "flaky", entry):
        client = Client(settings=settings)
        camp = client.create_campaign("flaky", "test-flaky", ARMS, max_attempts=2)
        camp.submit_many([(None, {})])
        FLAKY["left"] = blips
        sch = InlineScheduler(settings)
        for _ in range(4):
            sch.run_until_idle(max_rounds=50)
    assert camp.counts() == {outcome: 1}
    rows = camp.results()
    assert len(rows) == 1
    with client.Session() as s:
        events = s.scalars(select(TrialEvent.event)).all()
    assert events == ["retried"]
    if outcome == "failed":
        assert "transient: OperationalError" in (rows[0]["error"] or "")


# ------------------------------------------------------------------ 12. two schedulers
def test_two_schedulers_on_one_database_never_decide_an_instance_twice(
    settings: Settings,
) -> None:
    """Scheduler B read the pending instances before A's decisions committed (B lost the
    lock's session and has not noticed): B's decisions are fenced, each instance keeps one
    trial, and both go on."""
    client = Client(settings=settings)
    camp = _healthy(client, n=6)
    a, b = InlineScheduler(settings), InlineScheduler(settings)
    stale: dict[int, list[Any]] = {}
    real = b.core.store.pending_instances

    def pending_read_early(session: Any, campaign_id: int, limit: int) -> list[Any]:
        if campaign_id not in stale:
            stale[campaign_id] = real(session, campaign_id, limit)
        return stale[campaign_id]

    b.core.store.pending_instances = pending_read_early  # type: ignore[method-assign]
    with b.core.Session() as s:
        pending_read_early(s, camp.id, 2)  # B reads first ...
    a.sweep()  # ... A decides and commits the same instances (and records their publish) ...
    with a.core.Session() as s, s.begin():
        a.outbox.flush_marks(s)
    b.sweep()  # ... B tries to decide what it read
    assert b.published == []
    with client.Session() as s:
        per_instance = s.execute(
            select(Trial.instance_id, func.count()).group_by(Trial.instance_id)
        ).all()
    assert per_instance and all(n == 1 for _i, n in per_instance)
    b.core.store.pending_instances = real  # type: ignore[method-assign]
    for p in a.published:
        a.feed(__import__("workers.run_trial", fromlist=["execute"]).execute(p, "w"))
    a.published.clear()
    a.step()
    a.run_until_idle(max_rounds=200)
    assert camp.counts() == {"done": 6}


def test_idle_campaigns_are_evicted_from_memory_and_reloaded_on_demand(
    settings: Settings,
) -> None:
    settings = dataclasses.replace(settings, evict_seconds=0.0, snapshot_every=1000)
    client = Client(settings=settings)
    camp = _healthy(client, n=5)
    sch = InlineScheduler(settings)
    sch.run_until_idle(max_rounds=200)
    sch.step()
    assert camp.id not in sch.runtimes
    with client.Session() as s:
        snap = s.scalars(
            select(PolicySnapshot).where(PolicySnapshot.campaign_id == camp.id)
        ).first()
    assert snap is not None and snap.n_updates == 5  # snapshotted before it was let go
    camp.submit_many([(None, {"x": 9.0})])
    sch.run_until_idle(max_rounds=200)
    assert camp.counts() == {"done": 6}
    with client.Session() as s:
        assert s.scalar(select(Campaign.n_updates).where(Campaign.id == camp.id)) == 6


def test_a_worker_without_the_campaigns_kind_does_not_fail_its_trials_as_invalid(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kind is installed for the client and the scheduler but not on this worker: its
    trials are re-issued for another worker (not failed as 'invalid input'); with none, they
    fail after max_attempts saying which kind is missing where."""
    import workers.run_trial as rt
    from tasks.plugins import PluginError

    real = rt.get_kind

    def lacking(name: str) -> Any:
        if name == "noop":
            raise PluginError("kind", "unknown kind 'noop' (not installed here)")
        return real(name)

    client = Client(settings=settings)
    camp = client.create_campaign("lacks", "noop", ARMS, max_attempts=2)
    camp.submit_many([(None, {})])
    monkeypatch.setattr(rt, "get_kind", lacking)
    sch = InlineScheduler(settings)
    for _ in range(4):
        sch.run_until_idle(max_rounds=50)
    assert camp.counts() == {"failed": 1}
    row = camp.results()[0]
    assert "not usable on worker" in row["error"] and "invalid input" not in row["error"]
    with client.Session() as s:
        assert s.scalars(select(TrialEvent.event)).all() == ["retried"]
    monkeypatch.setattr(rt, "get_kind", real)  # a worker that has it: the next one succeeds
    camp.submit_many([(None, {})])
    sch.run_until_idle(max_rounds=50)
    assert camp.counts() == {"failed": 1, "done": 1}


def test_trials_waiting_for_a_device_class_with_no_live_worker_are_routed_again(
    settings: Settings,
) -> None:
    settings = dataclasses.replace(settings, announce_seconds=0.25)  # live for 1 s
    client = Client(settings=settings)
    camp = client.create_campaign(
        "routed", "noop", ARMS, settings={"device": "auto"}, max_in_flight=4
    )
    camp.submit_many([(None, {}) for _ in range(4)])

    def announce(worker: str, profile: dict[str, Any], cls: str) -> dict[str, Any]:
        return {
            "v": PROTOCOL,
            "type": "worker",
            "worker": worker,
            "device_class": cls,
            "profile": profile,
            "slots": 1,
        }

    gpu = announce("gpu@h", {"type": "cuda", "capability": 9.0}, "cuda-9.0")
    cpu = announce("cpu@h", {"type": "cpu"}, "cpu")
    sch = InlineScheduler(settings)
    sch.feed(gpu)
    sch.feed(cpu)
    sch.step()
    sch.sweep()
    first, sch.published = sch.published, []
    assert {p["device_class"] for p in first} == {"cuda-9.0", "cpu"}
    for p in first:
        if p["device_class"] == "cpu":
            sch.feed(execute_payload(p))
    sch.step()
    time.sleep(1.3)  # the GPU worker is gone; the CPU worker announces again
    sch.feed(cpu)
    sch.step()
    sch.sweep()
    moved = [p for p in sch.published if p["attempt"] == 2]
    assert moved and all(p["device_class"] == "cpu" for p in moved)
    sch.run_until_idle(max_rounds=100)
    assert camp.counts() == {"done": 4}
    with client.Session() as s:
        details = s.scalars(select(TrialEvent.detail)).all()
    assert details and all("no live worker" in d for d in details)


def execute_payload(p: dict[str, Any]) -> dict[str, Any]:
    from workers.run_trial import execute

    return execute(p, "w")
