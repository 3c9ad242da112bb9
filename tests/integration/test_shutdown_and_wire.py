"""Graceful shutdown and the wire format, against the real PostgreSQL and RabbitMQ: SIGTERM on
a worker finishes its trial, SIGTERM on the scheduler commits and snapshots, and a pickled
message is refused and logged by both scheduler and workers without losing anything."""

from __future__ import annotations

import pickle
import signal
import time

import kombu
from sqlalchemy import select, text

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from models import PolicySnapshot
from tasks.messages import results_queue
from tests.integration.test_faults import _check_exactly_once


def _settings(pg_settings: Settings) -> Settings:
    return Settings(**{**pg_settings.__dict__, "lease_seconds": 30.0, "sweep_seconds": 0.5})


def _wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def _consumers(settings: Settings) -> int:
    """Consumers on the trials queue (0 while it does not exist yet)."""
    with kombu.Connection(settings.broker_url) as conn:
        try:
            return int(conn.channel().queue_declare(settings.queue, passive=True).consumer_count)
        except Exception:  # not declared yet: the passive declare closes the channel
            return 0


def test_sigterm_on_a_worker_finishes_its_running_trial(pg_settings: Settings) -> None:
    settings = _settings(pg_settings)
    client = Client(settings=settings)
    camp = client.create_campaign(
        "term-worker", "sleep", [{"seconds": 2.0}], context_features=[], max_in_flight=1
    )
    cluster = LocalCluster(settings, workers=0)
    with cluster:
        cluster.start_scheduler()
        worker = cluster.start_worker(1)
        # A worker still starting up has no SIGTERM handler yet: wait until it consumes.
        _wait_for(lambda: _consumers(settings) >= 1)
        camp.submit_many([(None, {}) for _ in range(3)])
        _wait_for(lambda: camp.counts().get("decided", 0) == 1)
        time.sleep(0.8)  # the first trial is running now
        worker.send_signal(signal.SIGTERM)  # warm shutdown: finish the trial, take no more
        rc = worker.wait(timeout=30)
        assert rc == 0
        assert camp.counts().get("done", 0) == 1  # the running trial finished and reported
        cluster.start_worker(2)
        camp.wait(timeout=60)
    rows = camp.results()
    assert [r["status"] for r in rows] == ["succeeded"] * 3
    assert [r["attempt"] for r in rows] == [1, 1, 1]  # nothing re-run
    _check_exactly_once(client, "term-worker", 3)


def test_sigterm_on_the_scheduler_commits_and_snapshots(pg_settings: Settings) -> None:
    settings = _settings(pg_settings)
    client = Client(settings=settings)
    camp = client.create_campaign(
        "term-sched", "sleep", [{"seconds": 0.01}, {"seconds": 0.02}], context_features=["x"]
    )
    cluster = LocalCluster(settings, workers=2, scheduler=False)
    with cluster:
        sched = cluster.start_scheduler()
        camp.submit_many([(None, {"x": float(i % 3)}) for i in range(120)])
        _wait_for(lambda: camp.counts().get("done", 0) >= 30)
        sched.send_signal(signal.SIGTERM)
        assert sched.wait(timeout=30) == 0
        with client.Session() as s:
            snap = s.scalars(select(PolicySnapshot).order_by(PolicySnapshot.id.desc())).first()
            done = camp.counts().get("done", 0)
        # the exit snapshot holds every result the scheduler had applied
        assert snap is not None and snap.n_updates == done
        cluster.start_scheduler()
        camp.wait(timeout=120)
    _check_exactly_once(client, "term-sched", 120)


def test_pickled_messages_are_refused_and_logged(pg_settings: Settings) -> None:
    settings = _settings(pg_settings)
    client = Client(settings=settings)
    camp = client.create_campaign(
        "wire", "sleep", [{"seconds": 0.01}], context_features=[], max_in_flight=2
    )
    with LocalCluster(settings, workers=1) as cluster:
        with kombu.Connection(settings.broker_url) as conn:
            producer = conn.Producer()
            evil = pickle.dumps({"v": 1, "type": "result", "trial": "x", "attempt": 1})
            trials = kombu.Queue(
                settings.queue,
                kombu.Exchange(settings.queue, type="direct"),
                settings.queue,
                durable=True,
            )
            for q in (results_queue(settings.queue), trials):
                producer.publish(
                    evil,
                    routing_key=q.routing_key,
                    exchange=q.exchange,
                    content_type="application/x-python-serialize",
                    content_encoding="binary",
                    declare=[q],
                )
        camp.submit_many([(None, {}) for _ in range(10)])
        camp.wait(timeout=60)
        cluster.check()  # neither the scheduler nor the worker died of it
    logs = settings.home / "logs"
    scheduler_log = (logs / "scheduler.log").read_text(errors="replace")
    worker_log = (logs / "worker1.log").read_text(errors="replace")
    assert "refusing a message of content type 'application/x-python-serialize'" in scheduler_log
    assert "Refusing to deserialize untrusted content of type pickle" in worker_log
    _check_exactly_once(client, "wire", 10)
    with client.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM results")).scalar() == 10
