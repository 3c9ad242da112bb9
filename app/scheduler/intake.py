"""Intake: one burst of received messages handled in one transaction (wake-ups, results,
heartbeats, announcements), and what happens when that transaction fails.

A transient failure (the database or broker going away) hands the burst back for a retry. Any
other failure is an input that fails the same way every time: the burst is handled again
message by message, each in a transaction of its own, and the one that still fails is
acknowledged, kept in ``dead_letters`` with its reason and counted, so one message can never
stall the scheduler for everyone. Owned by the scheduler thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy
from kombu.message import Message

from app.scheduler.consumer import Inbox
from app.scheduler.core import Core
from app.scheduler.errors import RETRYABLE
from app.scheduler.outbox import Outbox
from app.scheduler.recording import Recorder
from app.scheduler.runtime import CampaignBroken
from tasks.messages import Heartbeat, Inbound, ResultMessage, WakeUp, WorkerAnnouncement

log = logging.getLogger("banditq.scheduler")


class Intake:
    """``database_failed(exc, handed)`` is the scheduler's: forget, requeue, pause."""

    def __init__(
        self,
        core: Core,
        inbox: Inbox,
        outbox: Outbox,
        recorder: Recorder,
        database_failed: Callable[[Exception, list[tuple[Inbound, Message]]], None],
    ) -> None:
        self.core = core
        self.inbox = inbox
        self.outbox = outbox
        self.recorder = recorder
        self.database_failed = database_failed

    def step(self) -> int | None:
        """Handle what the inbox holds; the results written, or None when the database
        failed (the burst handed back)."""
        taken = self.inbox.take()
        self._dead_letter(self.inbox.take_refused())
        try:
            done = self._handle(taken)
        except RETRYABLE as exc:
            self.database_failed(exc, taken)
            return None
        except Exception as exc:  # fails the same way every time: find the message(s)
            log.warning("a burst of %d message(s) failed (%s); one by one now", len(taken), exc)
            self._forget()
            return self._handle_one_by_one(taken)
        self.inbox.ack(taken)
        return done

    def _handle(self, taken: list[tuple[Inbound, Message]]) -> int:
        """Wake-ups, then results, heartbeats and announcements in one transaction."""
        results = [m for m, _ in taken if isinstance(m, ResultMessage)]
        beats = [m for m, _ in taken if isinstance(m, Heartbeat)]
        announced = [m for m, _ in taken if isinstance(m, WorkerAnnouncement)]
        for m, _ in taken:
            if isinstance(m, WakeUp):
                self.wake(m.campaign, m.reload)
        if not (results or beats or announced):
            return 0
        with self.core.Session() as session, session.begin():
            if beats:  # before a renewal, which must win over the queued lease
                self.outbox.flush_marks(session)
            self.recorder.renew_leases(session, beats)
            if announced and self.core.devices.record(session, self.core.store, announced):
                for rt in self.core.runtimes.values():
                    rt.maybe_pending = rt.maybe_pending or rt.auto_device
            return self.recorder.record(session, results)

    def _handle_one_by_one(self, taken: list[tuple[Inbound, Message]]) -> int | None:
        """Each message in a transaction of its own; one that still fails for a reason of
        its own is acknowledged and dead-lettered. None if the database itself failed (the
        unhandled rest handed back)."""
        done = 0
        for i, (m, message) in enumerate(taken):
            try:
                done += self._handle([(m, message)])
            except RETRYABLE as exc:
                self.database_failed(exc, taken[i:])
                return None
            except Exception as exc:
                self._forget()
                reason = f"failed when handled: {type(exc).__name__}: {exc}"
                body = m.to_json() if hasattr(m, "to_json") else repr(m)
                self.inbox.refuse(None, reason[:4000], body)
            message.ack()
        self._dead_letter(self.inbox.take_refused())
        return done

    def _dead_letter(self, refused: list[tuple[str, str, str]]) -> None:
        """Keep refused messages in ``dead_letters`` (a failure keeps them for the next
        step: they are acknowledged already, this is their only record)."""
        if not refused:
            return
        at = datetime.now(UTC)
        rows = [{"source": s, "reason": r, "body": b, "at": at} for s, r, b in refused]
        try:
            with self.core.Session() as session, session.begin():
                self.core.store.add_dead_letters(session, rows)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            log.warning("dead letters not written yet (%s); retrying", exc)
            self.inbox.refused[:0] = refused
            return
        self.core.hooks.dead_lettered(len(rows))

    def _forget(self) -> None:
        """After a failed transaction: in-memory state may hold its rolled-back effects."""
        self.core.forget()
        self.outbox.drop_marks()

    def wake(self, name: str, reload: bool = False) -> None:
        """A client committed new instances of campaign ``name`` (a broken campaign, or one
        that breaks while loading, stays asleep); with ``reload`` its row changed (resumed,
        cancelled, deleted): what this process holds of it is dropped and read again."""
        if not reload:  # a loaded campaign needs no read (an ask waits on this)
            for rt in self.core.runtimes.values():
                if rt.name == name:
                    rt.maybe_pending = True
                    return
        with self.core.Session() as session:
            cid = self.core.store.campaign_id(session, name)
            if reload:
                for known in [k for k, rt in self.core.runtimes.items() if rt.name == name]:
                    self.core.runtimes.pop(known, None)
                if cid is not None:
                    self.core.broken.pop(cid, None)
                    self.core.unsaved_broken.pop(cid, None)
            if cid is not None:
                with contextlib.suppress(CampaignBroken):
                    self.core.runtime(session, cid).maybe_pending = True
