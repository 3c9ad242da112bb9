"""Fault injection against the real PostgreSQL and RabbitMQ: workers SIGKILLed mid-trial,
a trial past its wall-time limit, a trial that kills its worker every time."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster


def _check_exactly_once(client: Client, name: str, n: int) -> None:
    with client.engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT i.id, count(r.id) FILTER (WHERE r.status = 'succeeded') "
                "FROM instances i JOIN campaigns c ON c.id = i.campaign_id "
                "LEFT JOIN trials t ON t.instance_id = i.id "
                "LEFT JOIN results r ON r.trial_id = t.id "
                "WHERE c.name = :n GROUP BY i.id"
            ),
            {"n": name},
        ).all()
        dup = c.execute(
            text(
                "SELECT count(*) FROM (SELECT trial_id, attempt FROM results "
                "GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
        ).scalar()
        n_ok = c.execute(text("SELECT count(*) FROM results WHERE status = 'succeeded'")).scalar()
        updates = c.execute(
            text("SELECT n_updates FROM campaigns WHERE name = :n"), {"n": name}
        ).scalar()
    assert len(rows) == n
    assert all(ok == 1 for _i, ok in rows), [r for r in rows if r[1] != 1][:5]
    assert dup == 0
    assert updates == n_ok == n  # one policy update per result, none twice


def test_workers_sigkilled_five_times_mid_trial(pg_settings: Settings) -> None:
    settings = Settings(**{**pg_settings.__dict__, "lease_seconds": 20.0, "sweep_seconds": 1.0})
    client = Client(settings=settings)
    camp = client.create_campaign(
        "kill",
        "sleep",
        [{"seconds": s} for s in (0.06, 0.1)],
        context_features=["x"],
        max_in_flight=6,
        max_attempts=5,
    )
    n = 600
    cluster = LocalCluster(settings, workers=0)
    workers = [cluster.start_worker(1), cluster.start_worker(2)]
    cluster.start_scheduler()
    cluster.wait_ready(workers=[1, 2])
    kills = []
    stop = threading.Event()

    def killer() -> None:
        time.sleep(3)
        for k in range(5):
            if stop.is_set():
                return
            victim = workers[k % 2]
            # The daemon and its pool child, mid-trial. The next kill comes once the new
            # worker runs trials: workers killed while starting would take the head of the
            # queue down with them each time, and a trial in three dead workers is failed
            # by design (the crash journal).
            workers[k % 2] = cluster.kill_worker(k % 2 + 1, victim)
            kills.append(victim.pid)
            time.sleep(1)

    th = threading.Thread(target=killer, daemon=True)
    try:
        camp.submit_many([(None, {"x": float(i % 10)}) for i in range(n)])
        th.start()
        camp.wait(timeout=400)
    finally:
        stop.set()
        th.join(30)
        cluster.stop()
    assert len(kills) == 5
    _check_exactly_once(client, "kill", n)


def test_wall_time_limit_and_poison_trial_fail_with_reason(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "limits",
        "sleep",
        [{"seconds": 0.01}],
        context_features=[],
        max_in_flight=4,
        max_trial_seconds=1.5,
    )
    with LocalCluster(pg_settings, workers=2):
        camp.submit(None, {}, seconds=30.0)  # hangs past its limit
        camp.submit(None, {}, kill_worker=True)  # kills its worker every time
        camp.submit_many([(None, {}) for _ in range(5)], seconds=0.01)
        camp.wait(timeout=240)
    rows = camp.results()
    by_seq = {r["instance_seq"]: r for r in rows}
    assert by_seq[0]["status"] == "failed" and "timed out" in by_seq[0]["error"]
    assert by_seq[1]["status"] == "failed" and "died" in by_seq[1]["error"]
    assert [by_seq[i]["status"] for i in range(2, 7)] == ["succeeded"] * 5


def test_wall_time_limit_on_a_threads_worker(pg_settings: Settings) -> None:
    """The threads pool ignores Celery's time limits: the worker's watchdog fails a trial
    past its limit (SoftTimeLimitExceeded in its thread) and the worker goes on."""
    settings = Settings(**{**pg_settings.__dict__, "worker_pool": "threads"})
    client = Client(settings=settings)
    camp = client.create_campaign(
        "limits-threads",
        "sleep",
        [{"seconds": 0.01}],
        context_features=[],
        max_in_flight=2,
        max_trial_seconds=1.5,
    )
    with LocalCluster(settings, workers=1):
        camp.submit(None, {}, seconds=30.0)  # hangs past its limit
        camp.submit_many([(None, {}) for _ in range(4)], seconds=0.01)
        camp.wait(timeout=120)
    by_seq = {r["instance_seq"]: r for r in camp.results()}
    assert by_seq[0]["status"] == "failed" and "timed out" in by_seq[0]["error"]
    assert by_seq[0]["latency_ms"] < 10_000
    assert [by_seq[i]["status"] for i in range(1, 5)] == ["succeeded"] * 4
