"""Publishing with an outbox: a trial is committed before it is sent, and its
``published_at`` and queued lease are recorded after the send, in the next transaction (so
recording costs no transaction of its own). A trial committed but never marked published is
sent again by the reconciler's outbox relay; one whose lease runs out is re-issued.

One message the broker refuses does not hold back the rest: the messages after it are sent
(a second failure in a row is taken for an outage: the relay retries later), the refused one
is counted, and after :data:`MAX_PUBLISH_TRIES` refusals its trial fails with the reason."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.scheduler.core import Core, now
from app.scheduler.limits import TimeLimits
from app.scheduler.publishing import TrialPublisher
from tasks.messages import TrialMessage

#: refusals of one trial's message before its trial fails
MAX_PUBLISH_TRIES = 3


class Outbox:
    """Owned by the scheduler thread."""

    def __init__(self, core: Core, publisher: TrialPublisher, limits: TimeLimits) -> None:
        self.core = core
        self.publisher = publisher
        self.limits = limits
        #: sent trials (uuids, attempts) whose published_at/lease the next transaction records
        self.unmarked: list[tuple[list[str], list[int], datetime, datetime]] = []
        #: refusals per trial not yet sent, and trials to fail (uuid, campaign, reason)
        self.refusals: dict[str, int] = {}
        self.poisoned: list[tuple[str, str, str]] = []

    def publish(self, messages: list[TrialMessage]) -> None:
        """Send, then queue the marks (the relay retries the unsent)."""
        remaining = list(messages)
        while remaining:
            sent = set(self.publisher.send(remaining))
            self._mark(remaining, sent)
            unsent = [m for m in remaining if m.trial not in sent]
            if not unsent:
                return
            head, rest = unsent[0], unsent[1:]
            self._refused(head)
            if not rest:
                return
            probe = set(self.publisher.send(rest[:1]))
            self._mark(rest[:1], probe)
            if not probe:
                return  # two in a row: the broker is down, not one message
            remaining = rest[1:]

    def _refused(self, m: TrialMessage) -> None:
        n = self.refusals[m.trial] = self.refusals.get(m.trial, 0) + 1
        if n >= MAX_PUBLISH_TRIES:
            self.refusals.pop(m.trial, None)
            error = str(getattr(self.publisher, "last_error", "") or "no detail")[:500]
            reason = f"failed: the broker refused its message {n} times ({error})"
            self.poisoned.append((m.trial, m.campaign, reason))

    def _mark(self, messages: list[TrialMessage], sent: set[str]) -> None:
        if not sent:
            return
        for uuid in sent:
            self.refusals.pop(uuid, None)
        at = now()
        by_lease: dict[float, list[TrialMessage]] = {}
        for m in messages:
            if m.trial in sent:
                by_lease.setdefault(self._lease(m), []).append(m)
        for seconds, sent_now in by_lease.items():
            self.unmarked.append(
                (
                    [m.trial for m in sent_now],
                    [m.attempt for m in sent_now],
                    at,
                    at + timedelta(seconds=seconds),
                )
            )

    def _lease(self, msg: TrialMessage) -> float:
        in_flight = next(
            (rt.max_in_flight for rt in self.core.runtimes.values() if rt.name == msg.campaign),
            1,
        )
        return self.limits.queued_lease(msg, in_flight)

    def flush_marks(self, session: Session) -> None:
        """Record the marks (and fail the trials whose message was refused too often) in
        ``session``'s transaction."""
        for uuids, attempts, at, until in self.unmarked:
            self.core.store.mark_published(session, uuids, at, until, attempts)
        self.unmarked.clear()
        for uuid, campaign, reason in self.poisoned:
            if self.core.store.fail_unpublished(session, uuid, reason, now()):
                for rt in self.core.runtimes.values():
                    if rt.name == campaign:
                        rt.in_flight = max(0, rt.in_flight - 1)
                        rt.maybe_pending = True
                self.core.hooks.publish_refused()
        self.poisoned.clear()

    def drop_marks(self) -> None:
        """After a failed transaction: those trials are republished by the relay (harmless:
        a worker's result for an attempt is recorded once); refused ones are counted
        again."""
        self.unmarked.clear()
        self.poisoned.clear()
