"""Service faults against the real PostgreSQL and RabbitMQ: the broker stopped for 10 s, the
database restarted, the scheduler SIGKILLed three times. Each campaign completes with exactly
one succeeded result per instance, and the services are restored even when a test fails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from app.policies.base import _decode
from app.scheduler.locks import LOCK_KEY, SchedulerLock, SchedulerLockedError
from app.scheduler.runtime import build_policy, load_runtime
from models import Arm, Campaign, Instance, Result, Trial, TrialEvent
from models.states import TrialEventKind
from tests.integration.test_faults import _check_exactly_once
from tests.integration.test_shutdown_and_wire import _consumers, _wait_for

PG_VERSION = sorted(os.listdir("/etc/postgresql"))[0] if Path("/etc/postgresql").exists() else ""


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait_port(port: int, up: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port) == up:
            return
        time.sleep(0.25)
    raise AssertionError(f"port {port} did not go {'up' if up else 'down'} in {timeout} s")


def _rabbit_start() -> None:
    if not _port_open(5672):
        subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
        _wait_port(5672, True, 90)


def _pg_start() -> None:
    if not _port_open(5432):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", "start"],
            check=False,
            capture_output=True,
        )
        _wait_port(5432, True, 60)


@pytest.fixture
def restore_services() -> Iterator[None]:
    """Whatever happens in the test, both services are running again afterwards."""
    try:
        yield
    finally:
        _rabbit_start()
        _pg_start()


def _fast(settings: Settings) -> Settings:
    return Settings(**{**settings.__dict__, "lease_seconds": 20.0, "sweep_seconds": 1.0})


def _campaign(client: Client, name: str, n: int, seconds: float = 0.02):  # type: ignore[no-untyped-def]
    camp = client.create_campaign(
        name,
        "sleep",
        [{"seconds": s} for s in (seconds, 2 * seconds, 3 * seconds)],
        context_features=["x"],
        max_in_flight=4,
        max_attempts=5,
    )
    camp.submit_many([(None, {"x": float(i % 7)}) for i in range(n)])
    return camp


def _when_done(
    client: Client, name: str, count: int, action: Callable[[], None]
) -> threading.Thread:
    """Run ``action`` in a thread once ``count`` instances of ``name`` are done."""

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = client.campaign(name).counts().get("done", 0)
            if done >= count:
                action()
                return
            time.sleep(0.2)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def _rabbit_outage(seconds: float, events: list[str]) -> Callable[[], None]:
    """An action that stops RabbitMQ, waits ``seconds``, starts it (noted in ``events``)."""

    def outage() -> None:
        subprocess.run(["rabbitmqctl", "stop"], check=False, capture_output=True, timeout=60)
        _wait_port(5672, False, 30)
        events.append("stopped")
        time.sleep(seconds)
        _rabbit_start()
        events.append("started")

    return outage


def test_rabbitmq_stopped_for_ten_seconds_mid_campaign(
    pg_settings: Settings, restore_services: None
) -> None:
    settings = _fast(pg_settings)
    client = Client(settings=settings)
    n = 300
    events: list[str] = []
    with LocalCluster(settings, workers=2) as cluster:
        camp = _campaign(client, "mq-outage", n)
        th = _when_done(client, "mq-outage", 60, _rabbit_outage(10.0, events))
        camp.wait(timeout=300)
        th.join(120)
        cluster.check()  # scheduler and workers rode it out: none exited
    assert events == ["stopped", "started"]
    _check_exactly_once(client, "mq-outage", n)


def test_trials_out_during_a_rabbitmq_outage_longer_than_the_lease_finish_once(
    pg_settings: Settings, restore_services: None
) -> None:
    """The broker is down longer than the lease, so no heartbeat gets through. After it, each
    trial that was out is either redelivered by RabbitMQ (its message was never acknowledged)
    or re-issued by its lease, whichever comes first: which one is a race, so only what must
    hold is asserted: every instance done exactly once and no trial failed for its lease.
    (The lease path itself, the drained inbox before expiring and a re-issue whose publish
    fails, are tested deterministically in test_leases and test_scheduler_corrections.)"""
    settings = Settings(
        **{
            **pg_settings.__dict__,
            "lease_seconds": 3.0,
            "queue_seconds": 3.0,
            "sweep_seconds": 1.0,
        }
    )
    client = Client(settings=settings)
    n = 120
    events: list[str] = []
    with LocalCluster(settings, workers=2) as cluster:
        camp = _campaign(client, "mq-lease", n, seconds=0.3)
        th = _when_done(client, "mq-lease", 20, _rabbit_outage(8.0, events))
        camp.wait(timeout=300)
        th.join(120)
        cluster.check()
    assert events == ["stopped", "started"]
    _check_exactly_once(client, "mq-lease", n)
    with client.Session() as s:
        lease_failed = s.scalar(
            select(func.count())
            .select_from(TrialEvent)
            .where(TrialEvent.event == TrialEventKind.lease_failed)
        )
    assert lease_failed == 0


def _pg_ctl(*args: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("restart", id="clean-restart"),
        # Immediate stop = a crash: no shutdown checkpoint, recovery from WAL on start. The
        # decisions committed without waiting for the WAL flush may be lost; they must be
        # decided again, and nothing else lost or counted twice.
        pytest.param("crash", id="crash-recovery"),
    ],
)
def test_postgresql_restarted_mid_campaign(
    pg_settings: Settings, restore_services: None, fault: str
) -> None:
    settings = _fast(pg_settings)
    client = Client(settings=settings)
    n = 300
    events: list[str] = []

    def restart() -> None:
        if fault == "restart":
            _pg_ctl("restart")
        else:
            _pg_ctl("stop", "-m", "immediate")
            _pg_ctl("start")
        events.append("restarted")

    name = f"pg-{fault}"
    with LocalCluster(settings, workers=2) as cluster:
        camp = _campaign(client, name, n)
        th = _when_done(client, name, 60, restart)
        deadline = time.monotonic() + 300
        while True:  # the client's own connections die in the restart too: retry reads
            try:
                camp.wait(timeout=max(1.0, deadline - time.monotonic()))
                break
            except TimeoutError:
                raise
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        th.join(60)
        # The session holding the scheduler's advisory lock died with the restart: the
        # scheduler takes the lock again, so a second scheduler is still refused.
        deadline = time.monotonic() + 30
        while _lock_holders(client) != 1:
            assert time.monotonic() < deadline, "the scheduler did not take its lock again"
            time.sleep(0.5)
        with pytest.raises(SchedulerLockedError), SchedulerLock(settings, client.engine):
            pass
        cluster.check()
    assert events == ["restarted"]
    _check_exactly_once(client, name, n)


def _lock_holders(client: Client) -> int:
    with client.engine.connect() as c:
        return int(
            c.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND objid = :k AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"k": LOCK_KEY},
            ).scalar()
            or 0
        )


def test_scheduler_sigkilled_three_times_then_replay_matches_live(pg_settings: Settings) -> None:
    settings = _fast(pg_settings)
    client = Client(settings=settings)
    n = 400
    kills: list[int] = []
    cluster = LocalCluster(settings, workers=2, scheduler=False)
    with cluster:
        sched = [cluster.start_scheduler()]

        def kill_and_restart() -> None:
            os.killpg(sched[0].pid, signal.SIGKILL)
            sched[0].wait()
            kills.append(sched[0].pid)
            time.sleep(0.5)
            sched[0] = cluster.start_scheduler()

        camp = _campaign(client, "sched-kill", n, seconds=0.01)
        for target in (60, 150, 250):
            _when_done(client, "sched-kill", target, kill_and_restart).join(120)
        camp.wait(timeout=300)
    assert len(kills) == 3
    _check_exactly_once(client, "sched-kill", n)
    with client.Session() as s:
        cid = s.scalar(select(Campaign.id).where(Campaign.name == "sched-kill"))
        decisions = s.scalar(
            select(Trial.id).where(Trial.campaign_id == cid).order_by(Trial.id.desc()).limit(1)
        )
        n_trials = len(s.scalars(select(Trial.id).where(Trial.campaign_id == cid)).all())
        # The live state: the scheduler's last snapshot (written at its SIGTERM on exit) plus
        # the results after it -- what a restart resumes from.
        live = load_runtime(s, cid).policy
        camp_row = s.get(Campaign, cid)
        assert camp_row is not None
        arms = list(s.scalars(select(Arm).where(Arm.campaign_id == cid).order_by(Arm.index)))
        fresh = build_policy(camp_row, arms)
        rows = s.execute(
            select(Result.cost, Trial.arm_index, Instance.context, Result.quality)
            .join(Trial, Trial.id == Result.trial_id)
            .join(Instance, Instance.id == Trial.instance_id)
            .where(Result.campaign_id == cid, Result.applied.is_(True))
            .order_by(Result.id)
        ).all()
        for cost, arm, ctx, quality in rows:
            fresh.update(np.array([ctx["x"]]), arm, float(cost), quality)
    assert decisions is not None and n_trials == n  # one decision per instance, none repeated
    assert fresh.n_updates == live.n_updates == n
    assert _same_state(fresh.get_state(), live.get_state())
    for k in range(20):
        x = np.array([float(k % 7)])
        assert fresh.choose(x, key=10_000 + k) == live.choose(x, key=10_000 + k)


def _same_state(a: object, b: object) -> bool:
    """Equal up to rounding: the scheduler runs BLAS on one thread, this process may not, and
    a product's last bits depend on how its sums are split (the decisions below must agree)."""
    if isinstance(a, dict) and isinstance(b, dict) and "__b64__" in a and "__b64__" in b:
        x, y = _decode(a), _decode(b)
        return bool(x.shape == y.shape and np.allclose(x, y, rtol=1e-9, atol=1e-12))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a))
    return a == b


def test_trials_longer_than_the_lease_keep_it_by_heartbeat(pg_settings: Settings) -> None:
    settings = Settings(**{**pg_settings.__dict__, "lease_seconds": 3.0, "sweep_seconds": 0.5})
    client = Client(settings=settings)
    camp = client.create_campaign(
        "long", "sleep", [{"seconds": 7.0}], context_features=[], max_in_flight=2, max_attempts=1
    )
    with LocalCluster(settings, workers=2):
        # Queued trials hold only the 3 s lease until a worker starts them: submit once both
        # workers consume (a loaded machine can take longer than that to boot one).
        _wait_for(lambda: _consumers(settings) >= 2)
        camp.submit_many([(None, {}) for _ in range(2)])
        camp.wait(timeout=120)
    rows = camp.results()
    # without heartbeats the 3 s lease would expire and, with max_attempts=1, fail the trial
    assert [r["status"] for r in rows] == ["succeeded", "succeeded"]
    assert [r["attempt"] for r in rows] == [1, 1]


def _consumer_timeout_ms(value: int | None = None) -> int:
    """Read (or set) RabbitMQ's node-wide consumer_timeout; 3.10 has no per-queue argument."""
    if value is not None:
        subprocess.run(
            ["rabbitmqctl", "eval", f"application:set_env(rabbit, consumer_timeout, {value})."],
            check=True,
            capture_output=True,
            timeout=60,
        )
    out = subprocess.run(
        ["rabbitmqctl", "eval", "application:get_env(rabbit, consumer_timeout)."],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return int(out.strip().strip("{}").split(",")[1])


def test_trials_longer_than_the_consumer_timeout_complete_exactly_once(
    pg_settings: Settings, restore_services: None
) -> None:
    before = _consumer_timeout_ms()
    settings = Settings(
        **{
            **pg_settings.__dict__,
            "lease_seconds": 4.0,
            "sweep_seconds": 0.5,
            "consumer_timeout": 3.0,
        }
    )
    client = Client(settings=settings)
    camp = client.create_campaign(
        "past-timeout",
        "sleep",
        [{"seconds": 65.0}],
        context_features=[],
        max_in_flight=2,
        max_attempts=1,
        max_trial_seconds=120,
    )
    try:
        # A delivery unacked for 3 s closes its channel; RabbitMQ checks about once a minute,
        # hence trials of 65 s. One worker, two trials: the second waits (prefetched) as long.
        assert _consumer_timeout_ms(3000) == 3000
        with LocalCluster(settings, workers=1) as cluster:
            camp.submit_many([(None, {}) for _ in range(2)])
            camp.wait(timeout=240)
            cluster.check()
    finally:
        _consumer_timeout_ms(before)
    rows = camp.results()
    assert [r["status"] for r in rows] == ["succeeded"] * 2
    assert [r["attempt"] for r in rows] == [1, 1]  # heartbeats held the 4 s lease
    with client.engine.connect() as c:
        n = c.execute(text("SELECT count(*) FROM results")).scalar()
    assert n == 2


def test_quorum_queues_carry_a_campaign_exactly_once(pg_settings: Settings) -> None:
    settings = Settings(
        **{**pg_settings.__dict__, "queue_type": "quorum", "queue": pg_settings.queue + "q"}
    )
    client = Client(settings=settings)
    camp = client.create_campaign(
        "quorum", "noop", [{"cost": 1.0}, {"cost": 2.0}], context_features=[], max_in_flight=8
    )
    try:
        with LocalCluster(settings, workers=2) as cluster:
            camp.submit_many([(None, {}) for _ in range(200)])
            camp.wait(timeout=120)
            cluster.check()
        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "name", "type", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        types = dict(line.split()[:2] for line in listed.splitlines() if line.strip())
        for name in (settings.queue, f"{settings.queue}.results", f"{settings.queue}.events"):
            assert types.get(name) == "quorum", (name, types.get(name))
    finally:
        for name in (settings.queue, f"{settings.queue}.results", f"{settings.queue}.events"):
            subprocess.run(["rabbitmqctl", "delete_queue", name], capture_output=True, timeout=60)
    _check_exactly_once(client, "quorum", 200)


def test_broker_blips_do_not_kill_a_running_trial(pg_settings: Settings) -> None:
    """Three blips (every connection closed by RabbitMQ) while one long trial runs: it is
    neither cancelled nor counted as a worker death (before: each blip killed it and the
    third failed it as 'worker process died 3 times')."""
    settings = _fast(pg_settings)
    client = Client(settings=settings)
    camp = client.create_campaign("blips", "sleep", [{"seconds": 9.0}], max_in_flight=1)
    with LocalCluster(settings, workers=1) as cluster:
        cluster.wait_ready()  # a worker still starting would start the trial after the blips
        camp.submit_many([(None, {})])
        deadline = time.monotonic() + 60
        running = "SELECT count(*) FROM trials WHERE state = 'running'"
        while time.monotonic() < deadline:
            with client.engine.connect() as c:
                if c.execute(text(running)).scalar():
                    break  # its first heartbeat came: the trial runs on the worker
            time.sleep(0.2)
        time.sleep(0.5)
        first_blip = datetime.now(UTC)
        for _ in range(3):
            subprocess.run(
                ["rabbitmqctl", "close_all_connections", "blip"],
                check=False,
                capture_output=True,
                timeout=60,
            )
            time.sleep(1.5)
        camp.wait(timeout=120)
        cluster.check()
    rows = camp.results()
    assert len(rows) == 1 and rows[0]["status"] == "succeeded", rows
    with client.Session() as s:
        started = s.scalars(select(Result.started_at)).all()
    # the result is of the run that started before the blips (a cancelled run starts anew)
    assert len(started) == 1 and started[0] < first_blip
