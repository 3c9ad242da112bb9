"""What the scheduler's parts share: settings, engines and sessions, the set-based writer, the
hooks, the live worker devices, and the campaigns held in memory.

Owned by one scheduler thread; nothing here is thread-safe. In-memory state is a cache of the
database: :meth:`Core.forget` drops it whenever a transaction fails.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine, session_factory
from app.scheduler.devices import DeviceRegistry
from app.scheduler.hooks import SchedulerHooks
from app.scheduler.runtime import CampaignBroken, CampaignRuntime, load_runtime
from app.scheduler.store import SchedulerStore, store_for

log = logging.getLogger("banditq.scheduler")


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
        #: campaigns found broken in this process (id -> reason); kept across forget()
        self.broken: dict[int, str] = {}
        #: broken marks not yet written (written by save_broken, in a transaction of its own)
        self.unsaved_broken: dict[int, str] = {}
        #: live workers' device classes, for campaigns decided per device (device "auto")
        self.devices = DeviceRegistry(ttl=4 * settings.announce_seconds)

    def runtime(self, session: Session, campaign_id: int) -> CampaignRuntime:
        """The campaign's in-memory state, loaded (snapshot + later results) on first use.

        :class:`CampaignBroken` when the campaign is broken, or becomes broken now because
        loading it failed for a reason of its own (its settings, a plugin missing here, a
        policy that raises on replay); database errors propagate as they are."""
        rt = self.runtimes.get(campaign_id)
        if rt is None:
            if campaign_id in self.broken:
                raise CampaignBroken(self.broken[campaign_id])
            try:
                rt = load_runtime(session, campaign_id, self.store)
            except CampaignBroken as exc:
                self.broken[campaign_id] = exc.reason  # marked in an earlier process
                raise
            except sqlalchemy.exc.SQLAlchemyError:
                raise
            except Exception as exc:
                reason = f"loading failed: {type(exc).__name__}: {exc}"
                self.mark_broken(campaign_id, reason)
                raise CampaignBroken(reason) from exc
            self.runtimes[campaign_id] = rt
        return rt

    def mark_broken(self, campaign_id: int, reason: str) -> None:
        """Stop serving one campaign (every other goes on): dropped from memory, skipped from
        now on, its status written by :meth:`save_broken`."""
        reason = reason.replace("\x00", "\ufffd")[:2000]
        log.error("campaign %d is broken: %s", campaign_id, reason)
        self.runtimes.pop(campaign_id, None)
        if campaign_id not in self.broken:
            self.hooks.campaign_broken()
        self.broken[campaign_id] = reason
        self.unsaved_broken[campaign_id] = reason

    def save_broken(self) -> None:
        """Write the broken marks (status and reason) in a transaction of its own; a
        failure leaves them for the next call."""
        if not self.unsaved_broken:
            return
        marks = dict(self.unsaved_broken)
        with self.Session() as session, session.begin():
            for cid, reason in marks.items():
                self.store.mark_broken(session, cid, reason)
        for cid in marks:
            self.unsaved_broken.pop(cid, None)

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
