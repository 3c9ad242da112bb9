"""A campaign's lifecycle on PostgreSQL, with the scheduler running (inline): pause, resume
(a broken campaign too), cancel, delete, retry the failed instances; and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.client import Client
from app.config import Settings
from models import BlobRef, Campaign, Instance, Trial
from tasks.errors import InputError
from tasks.linsys import LinearSystem
from tasks.messages import WakeUp
from tests.inline import InlineScheduler
from workers.run_trial import execute

ARMS = [{"cost": 1.0}, {"cost": 2.0}]


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=pg_url, sweep_seconds=1.0)


def _camp(client: Client, name: str = "life", n: int = 6, **kw: Any) -> Any:
    camp = client.create_campaign(name, "noop", ARMS, context_features=["x"], **kw)
    camp.submit_many([(None, {"x": float(i)}) for i in range(n)])
    return camp


def test_pause_refuses_submits_and_resume_takes_them_again(settings: Settings) -> None:
    client = Client(settings=settings)
    camp = _camp(client, n=2)
    assert camp.pause() == "paused"
    with pytest.raises(InputError):
        camp.submit_many([(None, {"x": 9.0})])
    sch = InlineScheduler(settings)
    sch.run_until_idle(max_rounds=50)
    assert camp.counts() == {"done": 2}  # what was submitted still ran
    assert camp.resume() == "active"
    camp.submit_many([(None, {"x": 9.0})])
    sch.run_until_idle(max_rounds=50)
    assert camp.counts() == {"done": 3}


def test_cancel_withdraws_what_has_not_started_while_the_scheduler_runs(
    settings: Settings,
) -> None:
    client = Client(settings=settings)
    camp = _camp(client, n=8, max_in_flight=2)
    sch = InlineScheduler(settings)
    sch.sweep()  # two trials decided and published, six instances pending
    queued, sch.published = sch.published, []
    out = camp.cancel()
    assert out == {"trials_withdrawn": 2, "instances_withdrawn": 6}
    for p in queued:  # a worker that had already taken them reports late: ignored
        sch.feed(execute(p, "w"))
    sch.feed(WakeUp("life", reload=True).to_json())
    sch.step()
    sch.run_until_idle(max_rounds=50)
    assert camp.counts() == {"failed": 8}
    assert sch.published == []
    with client.Session() as s:
        errors = s.scalars(select(Trial.error)).all()
        status = s.scalar(select(Campaign.status).where(Campaign.name == "life"))
    assert errors == ["cancelled", "cancelled"] and status == "paused"


def test_a_broken_campaign_resumes_once_fixed(settings: Settings) -> None:
    client = Client(settings=settings)
    camp = _camp(client, n=3)
    with client.Session() as s, s.begin():
        s.execute(update(Campaign).values(settings={"monitor_fraction": "half"}))
    sch = InlineScheduler(settings)
    sch.run_until_idle(max_rounds=50)
    assert camp.status()["state"] == "broken"
    with client.Session() as s, s.begin():  # the operator fixes the row
        s.execute(update(Campaign).values(settings={}))
    camp.resume()
    sch.feed(WakeUp("life", reload=True).to_json())  # what the client published
    sch.step()
    sch.run_until_idle(max_rounds=50)
    assert camp.counts() == {"done": 3}
    st = camp.status()
    assert st["state"] == "active" and st["broken_reason"] is None


def test_retry_failed_decides_the_failed_instances_again(settings: Settings) -> None:
    client = Client(settings=settings)
    camp = _camp(client, n=4)
    sch = InlineScheduler(settings)
    sch.sweep()
    first = sch.published.pop(0)
    sch.feed({**execute(first, "w"), "status": "failed", "error": "boom", "cost": None})
    sch.step()
    sch.run_until_idle(max_rounds=50)
    assert camp.counts() == {"done": 3, "failed": 1}
    assert camp.retry_failed() == 1
    sch.feed(WakeUp("life", reload=True).to_json())
    sch.step()
    sch.run_until_idle(max_rounds=50)
    assert camp.counts() == {"done": 4}


def test_delete_removes_the_records_and_releases_blobs_for_gc(settings: Settings) -> None:
    client = Client(settings=dataclasses_replace(settings, inline_bytes=256))
    camp = client.create_campaign("big", "sor", {"omega": [1.5]})
    import numpy as np

    from tasks.linsys import laplace2d

    camp.submit(LinearSystem(laplace2d(12, 0.1), np.ones(144)), {})  # stored by reference
    keep = _camp(client, name="other", n=1)
    with client.Session() as s:
        assert s.scalar(select(func.count()).select_from(BlobRef)) > 0
    camp.delete()
    with client.Session() as s:
        assert s.scalar(select(func.count()).select_from(BlobRef)) == 0
        assert s.scalar(select(func.count()).select_from(Instance)) == 1
    assert [c for c in client.campaigns()] == ["other"]
    sch = InlineScheduler(settings)
    sch.feed(WakeUp("big", reload=True).to_json())
    sch.step()
    sch.run_until_idle(max_rounds=50)
    assert keep.counts() == {"done": 1}


def dataclasses_replace(settings: Settings, **kw: Any) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **kw)


def test_lifecycle_from_the_cli(settings: Settings) -> None:
    client = Client(settings=settings)
    _camp(client, n=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    env.update(settings.to_env())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "campaign", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )

    assert "life: paused" in cli("pause", "life").stdout
    out = cli("cancel", "life")
    assert out.returncode == 0 and "withdrew 2 pending instance(s)" in out.stdout
    assert "life: active" in cli("resume", "life").stdout
    assert "2 failed instance(s) back to pending" in cli("retry", "life").stdout
    missing = cli("pause", "nope")
    assert missing.returncode != 0 and "no campaign named 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert "deleted" in cli("delete", "life", "--yes").stdout
    assert client.campaigns() == []
