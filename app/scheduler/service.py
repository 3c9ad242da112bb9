"""The scheduler process: owns the parts and the loop that drives them.

Event-driven: it blocks on the broker for result messages (from workers) and wake-up
messages (from clients), and handles each burst in one database transaction. A slow safety
sweep (``sweep_seconds``) catches what a missed message would leave behind: instances submitted
while the broker was down and decisions committed but never published (the outbox).

Ownership and ordering: only the scheduler writes trials, results and snapshots. A decision is
committed before its message is published; a result and its policy update are committed in
one transaction, so the policy's state always equals snapshot + applied results after it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kombu
import sqlalchemy
from kombu.message import Message
from sqlalchemy import Engine

from app.config import Settings
from app.metrics import Metrics
from app.scheduler.consumer import Inbox
from app.scheduler.core import Core
from app.scheduler.decisions import Decider
from app.scheduler.errors import BROKER_ERRORS, RETRYABLE
from app.scheduler.hooks import MetricsHooks, SchedulerHooks
from app.scheduler.limits import TimeLimits
from app.scheduler.locks import SchedulerLock
from app.scheduler.outbox import Outbox
from app.scheduler.publishing import CeleryPublisher, TrialPublisher
from app.scheduler.reconciler import Reconciler
from app.scheduler.recording import Recorder
from app.scheduler.runtime import load_runtime
from app.scheduler.snapshots import Snapshots
from tasks.messages import Heartbeat, Inbound, ResultMessage, WakeUp, WorkerAnnouncement

log = logging.getLogger("banditq.scheduler")


class Scheduler:
    """One per deployment (guarded by a lock). Not thread-safe: ``run`` owns everything.

    ``publisher`` (default: Celery task messages over ``settings.broker_url``) and ``hooks``
    (default: :class:`MetricsHooks` over ``metrics``) are injected."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        batch_size: int = 500,
        decision_chunk: int = 32,
        metrics: Metrics | None = None,
        hooks: SchedulerHooks | None = None,
        publisher: TrialPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.hooks = hooks or MetricsHooks(metrics)
        self.core = Core(settings, engine, self.hooks)
        limits = TimeLimits(settings)
        self.publisher = publisher or CeleryPublisher(
            self.broker, settings.queue, settings.queue_type, limits
        )
        self.inbox = Inbox(settings, self.hooks)
        self.outbox = Outbox(self.core, self.publisher, limits)
        self.recorder = Recorder(self.core)
        self.decider = Decider(self.core, self.outbox, decision_chunk, self.database_failed)
        self.reconciler = Reconciler(self.core, self.outbox, batch_size)
        self.snapshots = Snapshots(self.core)
        self._stop = threading.Event()
        self._last_sweep = 0.0
        self._lock: SchedulerLock | None = None

    # ------------------------------------------------------------------ views of the parts
    @property
    def engine(self) -> Engine:
        return self.core.engine

    @property
    def decision_engine(self) -> Engine:
        return self.core.decision_engine

    @property
    def runtimes(self) -> dict[int, Any]:
        return self.core.runtimes

    @property
    def devices(self) -> Any:
        return self.core.devices

    @property
    def metrics(self) -> Metrics:
        """The default hooks' metrics (a fresh, empty one with other hooks)."""
        return getattr(self.hooks, "metrics", None) or Metrics()

    def broker(self) -> kombu.Connection:
        return kombu.Connection(
            self.settings.broker_url, transport_options=self.settings.broker_transport_options()
        )

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._stop.set()

    def run(
        self, *, idle_exit: float | None = None, on_step: Callable[[], None] | None = None
    ) -> None:
        """Serve until :meth:`stop` (or ``idle_exit`` seconds with nothing to do)."""
        import scipy.linalg  # noqa: F401 - loads scipy's BLAS: the limit covers loaded ones
        from threadpoolctl import threadpool_limits

        # One BLAS thread by default: a decision's matrices are small, where a second thread
        # is slower and its spin-waiting burns a core the workers and the database need.
        with (
            threadpool_limits(limits=max(1, self.settings.scheduler_blas_threads), user_api="blas"),
            SchedulerLock(self.settings, self.engine) as self._lock,
        ):
            log.info("scheduler started: %s", self.settings.redacted())
            try:
                self._run(idle_exit, on_step)
            finally:
                self.publisher.close()

    def _run(self, idle_exit: float | None, on_step: Callable[[], None] | None) -> None:
        self.sweep()
        # Modules, policies and caches loaded so far live as long as the process: keep them
        # out of the cyclic collector, whose full passes over them (~50 ms here) would stall
        # decisions now and then.
        gc.freeze()
        last_work = [time.monotonic()]

        def after_drain() -> bool:
            if self.step():
                last_work[0] = time.monotonic()
            if time.monotonic() - self._last_sweep >= self.settings.sweep_seconds and self.sweep():
                last_work[0] = time.monotonic()
            if on_step is not None:
                on_step()
            if idle_exit is not None and time.monotonic() - last_work[0] > idle_exit:
                log.info("idle for %.1f s; exiting", idle_exit)
                return False
            return True

        while not self._stop.is_set():
            try:
                with self.broker() as conn:
                    self.inbox.consume(
                        conn, self.batch_size, lambda: not self._stop.is_set(), after_drain
                    )
                if self._stop.is_set():
                    self.step()
                return
            except BROKER_ERRORS as exc:
                log.warning("broker connection lost (%s); reconnecting in 2 s", exc)
                self.inbox.requeue()
                self._stop.wait(2.0)
            except sqlalchemy.exc.DBAPIError as exc:
                # PostgreSQL restarting: in-memory state is a cache of the database, so
                # drop it and carry on once the database answers again.
                log.warning("database unavailable (%s); retrying in 2 s", exc.orig)
                self.core.forget()
                self.inbox.requeue()
                self._stop.wait(2.0)

    def receive(self, body: Any, message: Message) -> None:
        """A message from the broker (or a test): parsed, held for the next step."""
        self.inbox.on_message(body, message)

    # ------------------------------------------------------------------ the work
    def step(self) -> int:
        """Handle buffered messages, decide for woken campaigns, publish. Returns work done.

        Two transactions: results (and heartbeats) commit durably before their messages are
        acknowledged; then decisions commit and are published. Unless ``durable_decisions``
        is set, the decision transaction does not wait for PostgreSQL's WAL flush (the next
        durable commit, or the WAL writer within ~0.6 s, flushes it): after a database crash
        the lost tail of decisions is decided again, and results for the lost trials are
        refused as unknown. WAL is written in order, so a durable result never refers to a
        lost decision, and the database is always a consistent prefix of what happened."""
        taken = self.inbox.take()
        results = [m for m, _ in taken if isinstance(m, ResultMessage)]
        beats = [m for m, _ in taken if isinstance(m, Heartbeat)]
        announced = [m for m, _ in taken if isinstance(m, WorkerAnnouncement)]
        for m, _ in taken:
            if isinstance(m, WakeUp):
                self.wake(m.campaign)
        done = 0
        try:
            if results or beats or announced:
                with self.core.Session() as session, session.begin():
                    if beats:  # before a renewal, which must win over the queued lease
                        self.outbox.flush_marks(session)
                    self.recorder.renew_leases(session, beats)
                    if announced and self.core.devices.record(session, self.core.store, announced):
                        for rt in self.core.runtimes.values():
                            rt.maybe_pending = rt.maybe_pending or rt.auto_device
                    done += self.recorder.record(session, results)
        except RETRYABLE as exc:
            self.database_failed(exc, taken)
            return 0
        self.inbox.ack(taken)
        if self.decider.wanted():
            done += self.decider.decide_and_publish()
        self.snapshots.take_due()
        self.hooks.gauges(self.core.in_flight(), len(self.core.runtimes))
        return done

    def database_failed(
        self, exc: Exception, handed: list[tuple[Inbound, Message]] | None = None
    ) -> None:
        """The database is the truth: forget in-memory state, hand the messages back, and
        retry after a pause (a restarting PostgreSQL comes back within seconds)."""
        log.warning("database transaction failed (%s); retrying in 1 s", exc)
        self.core.forget()
        self.outbox.drop_marks()
        if handed:
            self.inbox.requeue(handed)
        self._stop.wait(1.0)

    def wake(self, name: str) -> None:
        """A client committed new instances of campaign ``name``."""
        for rt in self.core.runtimes.values():
            if rt.name == name:
                rt.maybe_pending = True
                return
        with self.core.Session() as session:
            cid = self.core.store.campaign_id(session, name)
            if cid is not None:
                self.core.runtimes[cid] = load_runtime(session, cid, self.core.store)

    def sweep(self) -> int:
        """Find pending work no message announced, relay the outbox, expire leases."""
        self._last_sweep = time.monotonic()
        if self._lock is not None:
            self._lock.check()
        pending, relayed = self.reconciler.discover()
        self.reconciler.expire_leases()
        return (self.step() if pending else 0) + relayed

    def snapshot_all(self) -> None:
        self.snapshots.take_all()

    def in_flight_total(self) -> int:
        with self.core.Session() as session:
            return self.core.store.open_trial_count(session)
