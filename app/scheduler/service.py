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
from app.scheduler.intake import Intake
from app.scheduler.limits import TimeLimits
from app.scheduler.locks import SchedulerLock
from app.scheduler.outbox import Outbox
from app.scheduler.publishing import CeleryPublisher, TrialPublisher
from app.scheduler.reconciler import Reconciler
from app.scheduler.recording import Recorder
from app.scheduler.snapshots import Snapshots
from tasks.channel import IO_TIMEOUT_S, bounded_io
from tasks.messages import Inbound

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
        decision_chunk: int = 64,
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
        self.intake = Intake(
            self.core, self.inbox, self.outbox, self.recorder, self.database_failed
        )
        self._stop = threading.Event()
        self._last_sweep = 0.0
        self._lock: SchedulerLock | None = None
        #: results waiting in the broker are read before any lease expires: after a start
        #: or reconnect, expiry waits until a drain returned less than a full burst
        self._drained = True

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
        """The consumer's connection; its waits for channel and queue replies are bounded
        (after a broker restart they would otherwise hold the scheduler for good)."""
        conn = kombu.Connection(
            self.settings.broker_url, transport_options=self.settings.broker_transport_options()
        )
        return bounded_io(conn, IO_TIMEOUT_S)

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
                self.decider.close()
                self.publisher.close()

    def _run(self, idle_exit: float | None, on_step: Callable[[], None] | None) -> None:
        self._drained = False
        self.sweep()
        # Modules, policies and caches loaded so far live as long as the process: keep them
        # out of the cyclic collector, whose full passes over them (~50 ms here) would stall
        # decisions now and then.
        gc.freeze()
        last_work = [time.monotonic()]

        def after_drain() -> bool:
            if self.step():
                last_work[0] = time.monotonic()
            if self.inbox.last_taken < self.batch_size:
                self._drained = True
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
                self._drained = False
                log.warning("broker connection lost (%s); reconnecting in 2 s", exc)
                self.inbox.requeue()
                self._stop.wait(2.0)
            except RETRYABLE as exc:
                # PostgreSQL restarting: in-memory state is a cache of the database, so
                # drop it and carry on once the database answers again.
                log.warning("database unavailable (%s); retrying in 2 s", exc)
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
        done = self.intake.step()
        if done is None:
            return 0
        if self.decider.wanted():
            done += self.decider.decide_and_publish()
        self.snapshots.take_due()
        self.snapshots.evict_idle()
        self._save_broken()
        self.hooks.gauges(self.core.in_flight(), len(self.core.runtimes))
        return done

    def _save_broken(self) -> None:
        try:
            self.core.save_broken()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            log.warning("broken-campaign marks not written yet (%s); retrying", exc)

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

    def wake(self, name: str, reload: bool = False) -> None:
        """A client committed new instances of campaign ``name`` (``reload``: its row
        changed; see :meth:`Intake.wake`)."""
        self.intake.wake(name, reload)

    def sweep(self) -> int:
        """Find pending work no message announced, relay the outbox, expire leases."""
        self._last_sweep = time.monotonic()
        if self._lock is not None:
            self._lock.check()
        pending, relayed = self.reconciler.discover()
        relayed += self._record_lost_tells()
        if self._drained:
            self.reconciler.expire_leases()
        relayed += self.reconciler.reroute_orphans()
        return (self.step() if pending else 0) + relayed

    def _record_lost_tells(self) -> int:
        """Tells whose message never came, recorded from the trial rows (exactly once, as
        any result; a failure of one campaign's update is quarantined by the recorder)."""
        told = self.reconciler.recover_tells()
        if not told:
            return 0
        with self.core.Session() as session, session.begin():
            return self.recorder.record(session, told)

    def snapshot_all(self) -> None:
        self.snapshots.take_all()

    def in_flight_total(self) -> int:
        with self.core.Session() as session:
            return self.core.store.open_trial_count(session)
