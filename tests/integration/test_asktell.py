"""Ask/tell on PostgreSQL + RabbitMQ: concurrent askers in several processes, a tell told
twice or too late, an exception inside ``camp.trial``, a scheduler SIGKILLed between an ask
and its tell, asks on a paused campaign, and a tell whose message was lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from app.policies.base import _decode
from app.scheduler.runtime import apply_result, build_policy, load_runtime
from models import Arm, Campaign, Instance, Result, Trial
from tasks.errors import InputError
from tests.inline import InlineScheduler

ARMS = {"omega": [1.0, 1.2, 1.4, 1.6, 1.8]}


def _statuses(client: Client, name: str) -> dict[str, int]:
    with client.engine.connect() as c:
        rows = c.execute(
            text("SELECT status, count(*) FROM trial_results WHERE campaign = :n GROUP BY 1"),
            {"n": name},
        )
        return {str(s): int(n) for s, n in rows}


def _until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _cost(arm: dict[str, Any], c: float) -> float:
    return 10.0 + 40.0 * (arm["omega"] - (1.1 + 0.6 * c)) ** 2


ASKER = textwrap.dedent(
    """
    import sys
    from app.client import Client
    from tests.integration.test_asktell import _cost
    name, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with Client() as client:
        camp = client.campaign(name)
        for i in range(n):
            c = ((seed * 7919 + i) % 100) / 100
            d = camp.ask({"c": c})
            camp.tell(d, cost=_cost(d.arm, c), converged=True)
    print("ok")
    """
)


def test_concurrent_askers_tell_twice_and_trial_failures(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_campaign("sim-7", "external", ARMS, context_features=["c"])
    with LocalCluster(pg_settings, workers=0) as cluster:
        env = cluster.env()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", ASKER, "sim-7", "40", str(k)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for k in range(3)
        ]
        d = camp.ask({"c": 0.5})
        camp.tell(d, cost=_cost(d.arm, 0.5), iterations=12, latency_ms=2.0, converged=True)
        with pytest.raises(InputError, match="already told") as err:
            camp.tell(d, cost=1.0)
        assert err.value.field == "decision"
        with pytest.raises(ZeroDivisionError), camp.trial({"c": 0.1}):
            raise ZeroDivisionError("singular preconditioner")
        for p in procs:
            out, errs = p.communicate(timeout=180)
            assert p.returncode == 0, errs.decode()[-2000:]
        _until(lambda: _statuses(client, "sim-7").get("succeeded") == 121)
    st = _statuses(client, "sim-7")
    assert st == {"succeeded": 121, "failed": 1}, st
    with client.engine.connect() as c:
        err_text = c.execute(
            text("SELECT error FROM trial_results WHERE campaign = 'sim-7' AND status = 'failed'")
        ).scalar()
        dup = c.execute(text("SELECT count(*) - count(DISTINCT trial_id) FROM results")).scalar()
        told = c.execute(
            text("SELECT cost, iterations, latency_ms FROM trial_results WHERE trial_uuid = :u"),
            {"u": d.id},
        ).one()
    assert err_text == "ZeroDivisionError: singular preconditioner"
    assert dup == 0  # one result per decision, whatever the concurrency
    assert tuple(told) == (pytest.approx(_cost(d.arm, 0.5)), 12, 2.0)
    with client.Session() as s:
        row = s.scalar(select(Campaign).where(Campaign.name == "sim-7"))
        assert row is not None and row.n_updates == 121
    client.close()


def test_scheduler_sigkilled_between_ask_and_tell_loses_nothing(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "kill", "external", ARMS, context_features=["c"], tell_timeout=600
    )
    cluster = LocalCluster(pg_settings, workers=0, scheduler=False)
    with cluster:
        sched = cluster.start_scheduler()
        for i in range(20):
            d = camp.ask({"c": i / 20})
            camp.tell(d, cost=_cost(d.arm, i / 20))
        held = camp.ask_many([{"c": 0.25}, {"c": 0.75}])
        os.killpg(sched.pid, signal.SIGKILL)
        sched.wait()
        for d in held:  # told while no scheduler runs: the messages wait in RabbitMQ
            camp.tell(d, cost=_cost(d.arm, d.context["c"]))
        cluster.start_scheduler()
        _until(lambda: _statuses(client, "kill").get("succeeded") == 22, timeout=60)
        d = camp.ask({"c": 0.5})  # and it decides again
        camp.tell(d, cost=_cost(d.arm, 0.5))
        _until(lambda: _statuses(client, "kill").get("succeeded") == 23, timeout=60)
    with client.Session() as s:
        cid = s.scalar(select(Campaign.id).where(Campaign.name == "kill"))
        live = load_runtime(s, cid).policy
        row = s.get(Campaign, cid)
        assert row is not None
        arms = list(s.scalars(select(Arm).where(Arm.campaign_id == cid).order_by(Arm.index)))
        fresh = build_policy(row, arms)
        logged = s.execute(
            select(Result.cost, Trial.arm_index, Instance.context, Result.quality, Result.censored)
            .join(Trial, Trial.id == Result.trial_id)
            .join(Instance, Instance.id == Trial.instance_id)
            .where(Result.campaign_id == cid, Result.applied.is_(True))
            .order_by(Result.id)
        ).all()
        for cost, arm, ctx, quality, censored in logged:
            apply_result(fresh, np.array([ctx["c"]]), arm, cost, quality, censored)
    assert len(logged) == fresh.n_updates == live.n_updates == 23
    _same_state(_decode(fresh.get_state()), _decode(live.get_state()))
    for key in range(40):  # and so the same choices
        x = np.array([key / 40])
        assert fresh.choose(x, key) == live.choose(x, key)
    client.close()


def _same_state(a: Any, b: Any) -> None:
    """Equal up to float rounding (a snapshot plus updates vs one replay from the start)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b)
        for k in a:
            _same_state(a[k], b[k])
    elif isinstance(a, np.ndarray | float):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same_state(x, y)
    else:
        assert a == b


def test_late_tells_paused_campaigns_and_lost_tell_messages(
    pg_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the inline scheduler (the sweep driven by the test): a decision abandoned after
    its tell timeout refuses its tell; a tell whose message never reached the scheduler is
    recorded from the trial row by the sweep, once."""
    import app.scheduler.reconciler as reconciler

    client = Client(settings=pg_settings)
    camp = client.create_campaign("late", "external", ARMS, context_features=["c"], tell_timeout=1)
    sch = InlineScheduler(pg_settings)
    camp.submit(None, {"c": 0.2})  # what ask writes; the inline scheduler decides it
    camp.submit(None, {"c": 0.4})
    sch.wake("late")
    sch.step()
    waiter = camp._waiter()
    with client.Session() as s:
        ids = list(s.scalars(select(Instance.id).order_by(Instance.id)))
    rows = waiter.decided(ids)
    assert len(rows) == 2
    (uuid_a, *_), (uuid_b, *_) = rows[ids[0]], rows[ids[1]]
    # b is told, but its message is lost (only the row is written)
    waiter.mark_told(uuid_b, camp.id, '{"status": "succeeded", "cost": 7.5}', "late")
    time.sleep(1.2)
    monkeypatch.setattr(reconciler, "TELL_GRACE_S", 0.0)
    sch.sweep()
    sch.sweep()  # twice: recorded once
    st = _statuses(client, "late")
    assert st == {"abandoned": 1, "succeeded": 1}, st
    with pytest.raises(InputError, match="abandoned"):
        camp.tell(uuid_a, cost=1.0)
    with pytest.raises(InputError, match="already told"):
        camp.tell(uuid_b, cost=1.0)
    with client.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM results")).scalar() == 1
        assert c.execute(text("SELECT n_updates FROM campaigns")).scalar() == 1
    camp.pause()
    with pytest.raises(InputError, match="paused") as err:
        camp.ask({"c": 0.3}, timeout=2)
    assert err.value.field == "campaign"
    client.close()
