"""Publishing with an outbox: a trial is committed before it is sent, and its
``published_at`` and queued lease are recorded after the send, in the next transaction (so
recording costs no transaction of its own). A trial committed but never marked published is
sent again by the reconciler's outbox relay; one whose lease runs out is re-issued."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.scheduler.core import Core, now
from app.scheduler.limits import TimeLimits
from app.scheduler.publishing import TrialPublisher
from tasks.messages import TrialMessage


class Outbox:
    """Owned by the scheduler thread."""

    def __init__(self, core: Core, publisher: TrialPublisher, limits: TimeLimits) -> None:
        self.core = core
        self.publisher = publisher
        self.limits = limits
        #: sent trials whose published_at/lease the next transaction records
        self.unmarked: list[tuple[list[str], datetime, datetime]] = []

    def publish(self, messages: list[TrialMessage]) -> None:
        """Send, then queue the marks (the relay retries the unsent)."""
        if not messages:
            return
        sent = set(self.publisher.send(messages))
        if not sent:
            return
        at = now()
        by_lease: dict[float, list[str]] = {}
        for m in messages:
            if m.trial in sent:
                by_lease.setdefault(self._lease(m), []).append(m.trial)
        for seconds, uuids in by_lease.items():
            self.unmarked.append((uuids, at, at + timedelta(seconds=seconds)))

    def _lease(self, msg: TrialMessage) -> float:
        in_flight = next(
            (rt.max_in_flight for rt in self.core.runtimes.values() if rt.name == msg.campaign),
            1,
        )
        return self.limits.queued_lease(msg, in_flight)

    def flush_marks(self, session: Session) -> None:
        """Record the marks in ``session``'s transaction."""
        for uuids, at, until in self.unmarked:
            self.core.store.mark_published(session, uuids, at, until)
        self.unmarked.clear()

    def drop_marks(self) -> None:
        """After a failed transaction: those trials are republished by the relay (harmless:
        a worker's result for an attempt is recorded once)."""
        self.unmarked.clear()
