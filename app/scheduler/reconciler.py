"""The slow safety net: find pending work no message announced, relay the outbox (trials
committed but never marked published), and expire leases (a trial with no result when its
lease runs out is re-issued as a new attempt, up to the campaign's max_attempts, then failed
with the reason; a late result of an old attempt is then ignored: fenced by attempt)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from app.scheduler.core import Core, now
from app.scheduler.outbox import Outbox
from models.states import TrialEventKind
from tasks.messages import TrialMessage

log = logging.getLogger("banditq.scheduler")


class Reconciler:
    """Owned by the scheduler thread."""

    def __init__(self, core: Core, outbox: Outbox, batch_size: int) -> None:
        self.core = core
        self.outbox = outbox
        self.batch_size = batch_size

    def discover(self) -> tuple[bool, int]:
        """Wake campaigns with pending instances; relay the outbox. Returns (some campaign
        has pending work, trials relayed)."""
        if self.outbox.unmarked:  # before the outbox query: those trials were published
            with self.core.Session() as session, session.begin():
                self.outbox.flush_marks(session)
        with self.core.Session() as session:
            store = self.core.store
            if not self.core.devices.loaded:
                self.core.devices.load(session, store)
            cids = store.campaigns_with_pending(session)
            for cid in cids:
                self.core.runtime(session, cid).maybe_pending = True
            stale = store.unpublished_trials(session, self.batch_size * 4)
            relay = [self._message(session, s, s.attempt) for s in stale]
        if relay:
            log.info("outbox: publishing %d committed but unpublished trial(s)", len(relay))
            self.outbox.publish(relay)
        return bool(cids), len(relay)

    def _message(self, session: Session, row: Any, attempt: int) -> TrialMessage:
        rt = self.core.runtime(session, row.campaign_id)
        return rt.message(
            row.uuid,
            attempt,
            row.spec,
            row.arm_index,
            row.reason,
            row.seq,
            row.device_class,
            row.instance_id,
        )

    def expire_leases(self) -> None:
        at = now()
        reissue: list[TrialMessage] = []
        lease = self.core.settings.lease_seconds
        with self.core.Session() as session, session.begin():
            expired = self.core.store.expired_trials(session, at, self.batch_size)
            for e in expired:
                rt = self.core.runtime(session, e.campaign_id)
                if e.attempt >= rt.max_attempts:
                    reason = (
                        f"failed: no result after {e.attempt} attempt(s) of {lease:g} s lease each"
                    )
                    self.core.store.fail_trial(session, e.id, e.instance_id, reason, at)
                    self.core.store.add_event(session, e, TrialEventKind.lease_failed, reason, at)
                    rt.in_flight = max(0, rt.in_flight - 1)
                    rt.maybe_pending = True
                    self.core.hooks.lease_expired(reissued=False)
                    log.warning("trial %s %s", e.uuid, reason)
                    continue
                # Back to ``queued`` and unpublished: the outbox owns it until its publish
                # is recorded, so a failed publish (or marks dropped with a failed
                # transaction) leaves it reachable, never open with no lease.
                self.core.store.reissue(session, e.id, e.attempt + 1)
                detail = f"re-issued as attempt {e.attempt + 1}"
                self.core.store.add_event(session, e, TrialEventKind.lease_expired, detail, at)
                self.core.hooks.lease_expired(reissued=True)
                reissue.append(self._message(session, e, e.attempt + 1))
        if reissue:
            log.warning("lease expired for %d trial(s); re-issuing as new attempts", len(reissue))
            self.outbox.publish(reissue)
