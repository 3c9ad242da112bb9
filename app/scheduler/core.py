"""What the scheduler's parts share: settings, engines and sessions, the set-based writer, the
hooks, the live worker devices, and the campaigns held in memory.

Owned by one scheduler thread; nothing here is thread-safe. In-memory state is a cache of the
database: :meth:`Core.forget` drops it whenever a transaction fails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine, session_factory
from app.scheduler.devices import DeviceRegistry
from app.scheduler.hooks import SchedulerHooks
from app.scheduler.runtime import CampaignRuntime, load_runtime
from app.scheduler.store import SchedulerStore, store_for


def now() -> datetime:
    return datetime.now(UTC)


class Core:
    """Shared by the parts of one scheduler (see the package docstring)."""

    def __init__(self, settings: Settings, engine: Engine | None, hooks: SchedulerHooks) -> None:
        self.settings = settings
        # No pre-ping: every failure inside a transaction is handled (state dropped, messages
        # requeued, retried), and a ping is a round trip per transaction.
        self.engine = engine or make_engine(settings.database_url, pool_pre_ping=False)
        self.Session: sessionmaker[Session] = session_factory(self.engine)
        self.store: SchedulerStore = store_for(self.engine)
        #: decisions commit here: without waiting for the WAL flush unless durable_decisions
        self.decision_engine = (
            _async_commit_engine(self.engine)
            if self.store.pg and not settings.durable_decisions
            else self.engine
        )
        self.DecisionSession: sessionmaker[Session] = session_factory(self.decision_engine)
        self.hooks = hooks
        self.runtimes: dict[int, CampaignRuntime] = {}
        #: live workers' device classes, for campaigns decided per device (device "auto")
        self.devices = DeviceRegistry(ttl=4 * settings.announce_seconds)

    def runtime(self, session: Session, campaign_id: int) -> CampaignRuntime:
        """The campaign's in-memory state, loaded (snapshot + later results) on first use."""
        rt = self.runtimes.get(campaign_id)
        if rt is None:
            rt = load_runtime(session, campaign_id, self.store)
            self.runtimes[campaign_id] = rt
        return rt

    def forget(self) -> None:
        self.runtimes.clear()

    def wants_room(self) -> bool:
        """Some loaded campaign may have pending instances and room in flight."""
        return any(
            rt.maybe_pending and rt.in_flight < rt.max_in_flight for rt in self.runtimes.values()
        )

    def in_flight(self) -> int:
        return sum(rt.in_flight for rt in self.runtimes.values())


def _async_commit_engine(engine: Engine) -> Engine:
    """A second engine on the same database whose connections commit without waiting for
    the WAL flush (a session setting, so no statement per transaction)."""
    decisions = make_engine(engine.url.render_as_string(hide_password=False), pool_pre_ping=False)

    @event.listens_for(decisions, "connect")
    def _no_flush_wait(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SET synchronous_commit TO off")
        dbapi_conn.commit()

    return decisions
