"""Leases count running time only (issue 27, item 4), on PostgreSQL (+ RabbitMQ where the
scheduler's own loop is under test): queued time is bounded separately; a restarted
scheduler reads the results waiting for it before any lease expires; a result of the
previous attempt counts while the re-issued one has not started."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import kombu
import pytest
from sqlalchemy import func, select

from app.client import Client
from app.config import Settings
from app.scheduler import Scheduler
from models import Result, Trial, TrialEvent
from tasks.messages import results_queue
from tests.inline import InlineScheduler
from workers.run_trial import execute

ARMS = [{"cost": 1.0}, {"cost": 2.0}]


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=pg_url, sweep_seconds=1.0)


def _campaign(client: Client, n: int, **kw: Any) -> Any:
    camp = client.create_campaign("c", "noop", ARMS, context_features=["x"], **kw)
    camp.submit_many([(None, {"x": float(i)}) for i in range(n)])
    return camp


def _events(client: Client) -> int:
    with client.Session() as s:
        return s.scalar(select(func.count()).select_from(TrialEvent)) or 0


def test_time_in_the_queue_does_not_count_against_the_running_lease(settings: Settings) -> None:
    """A trial waiting behind others longer than the lease is not re-issued or failed."""
    settings = dataclasses.replace(settings, lease_seconds=0.3)
    client = Client(settings=settings)
    camp = _campaign(client, 4, max_in_flight=4, max_attempts=1)
    sch = InlineScheduler(settings)
    sch.sweep()
    queued, sch.published = sch.published, []
    sch.sweep()  # records the publish marks
    time.sleep(0.8)
    sch.sweep()  # four leases of 0.3 s would have run out
    assert sch.published == [] and _events(client) == 0
    for p in queued:
        sch.feed(execute(p, "w"))
    sch.step()
    assert camp.counts() == {"done": 4}


def test_a_result_of_the_previous_attempt_counts_while_the_reissued_one_has_not_started(
    settings: Settings,
) -> None:
    settings = dataclasses.replace(settings, lease_seconds=0.2, queue_seconds=0.2)
    client = Client(settings=settings)
    camp = _campaign(client, 2, max_in_flight=2, max_attempts=3)
    sch = InlineScheduler(settings)
    sch.sweep()
    first, sch.published = sch.published, []
    sch.sweep()
    time.sleep(0.5)
    sch.sweep()  # both re-issued as attempt 2
    second, sch.published = sch.published, []
    assert sorted(p["attempt"] for p in second) == [2, 2]
    for p in first:  # the slow first attempts report before attempt 2 starts
        sch.feed(execute(p, "w"))
    sch.step()
    assert camp.counts() == {"done": 2}
    for p in second:  # the re-issued runs are duplicates now
        sch.feed(execute(p, "w"))
    sch.step()
    with client.Session() as s:
        rows = s.execute(select(Result.attempt, Result.status)).all()
    assert sorted(rows) == [(1, "succeeded"), (1, "succeeded")]
    assert sch.metrics.counters["duplicate_results"] == 2


def test_a_scheduler_restarted_after_an_outage_reads_waiting_results_before_expiring(
    tmp_path: Path, pg_url: str, amqp_url: str, queue_name: str
) -> None:
    """Results that arrived while the scheduler was down, past every queued lease: all are
    recorded, none thrown away as stale (max_attempts=1 would fail each expired trial)."""
    settings = Settings(
        home=tmp_path / "home",
        database_url=pg_url,
        broker_url=amqp_url,
        queue=queue_name,
        sweep_seconds=0.2,
        lease_seconds=0.3,
        queue_seconds=0.3,
    )
    client = Client(settings=settings)
    camp = _campaign(client, 4, max_in_flight=4, max_attempts=1)
    sch = InlineScheduler(settings)
    sch.sweep()
    decided, sch.published = sch.published, []
    sch.sweep()
    results = [execute(p, "w") for p in decided]
    q = results_queue(settings.queue)
    with kombu.Connection(amqp_url) as conn:
        producer = conn.Producer()
        for r in results:
            producer.publish(
                json.dumps(r),
                exchange=q.exchange,
                routing_key=q.routing_key,
                content_type="application/json",
                content_encoding="utf-8",
                declare=[q],
            )
    time.sleep(1.0)  # the outage outlasts every lease
    Scheduler(settings).run(idle_exit=1.5)
    assert camp.counts() == {"done": 4}
    assert _events(client) == 0
    with client.Session() as s:
        assert s.scalar(select(func.count()).select_from(Trial).where(Trial.state == "failed")) == 0
