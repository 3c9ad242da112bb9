"""The slow safety net: find pending work no message announced, relay the outbox (trials
committed but never marked published), and expire leases (a trial with no result when its
lease runs out is re-issued as a new attempt, up to the campaign's max_attempts, then failed
with the reason; a late result of an old attempt is then ignored: fenced by attempt)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Select, insert, select, text, update
from sqlalchemy.orm import Session

from app.scheduler.core import Core, now
from app.scheduler.outbox import Outbox
from models import Campaign, Instance, Trial, TrialEvent
from models.states import OPEN_STATES, InstanceStatus, TrialEventKind, TrialState
from tasks.messages import NOTIFY_CHANNEL, TrialMessage

log = logging.getLogger("banditq.scheduler")


def _open_trials() -> Select[Any]:
    return select(
        Trial.id,
        Trial.uuid,
        Trial.attempt,
        Trial.campaign_id,
        Trial.arm_index,
        Trial.instance_id,
        Trial.reason,
        Instance.seq,
        Instance.spec,
        Trial.device_class,
    ).join(Instance, Instance.id == Trial.instance_id)


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
            if not self.core.devices.loaded:
                self.core.devices.load(session)
            # One index probe per campaign (a DISTINCT over instances would read them all).
            has_pending = (
                select(Instance.id)
                .where(
                    Instance.campaign_id == Campaign.id,
                    Instance.status == InstanceStatus.pending.value,
                )
                .exists()
            )
            cids = session.scalars(select(Campaign.id).where(has_pending)).all()
            for cid in cids:
                self.core.runtime(session, cid).maybe_pending = True
            stale = session.execute(
                _open_trials()
                .where(Trial.state == TrialState.queued.value, Trial.published_at.is_(None))
                .order_by(Trial.id)
                .limit(self.batch_size * 4)
            ).all()
            relay = [self._message(session, s, s.attempt) for s in stale]
        if relay:
            log.info("outbox: publishing %d committed but unpublished trial(s)", len(relay))
            self.outbox.publish(relay)
        return bool(cids), len(relay)

    def _message(self, session: Session, row: Any, attempt: int) -> TrialMessage:
        rt = self.core.runtime(session, row.campaign_id)
        return rt.message(
            row.uuid, attempt, row.spec, row.arm_index, row.reason, row.seq, row.device_class
        )

    def expire_leases(self) -> None:
        at = now()
        reissue: list[TrialMessage] = []
        lease = self.core.settings.lease_seconds
        with self.core.Session() as session, session.begin():
            expired = session.execute(
                _open_trials()
                .where(Trial.state.in_(OPEN_STATES), Trial.lease_expires_at < at)
                .limit(self.batch_size)
            ).all()
            for e in expired:
                rt = self.core.runtime(session, e.campaign_id)
                if e.attempt >= rt.max_attempts:
                    reason = (
                        f"failed: no result after {e.attempt} attempt(s) of {lease:g} s lease each"
                    )
                    self._fail(session, e, reason, at)
                    rt.in_flight = max(0, rt.in_flight - 1)
                    rt.maybe_pending = True
                    self.core.hooks.lease_expired(reissued=False)
                    log.warning("trial %s %s", e.uuid, reason)
                    continue
                # Back to ``queued`` and unpublished: the outbox owns it until its publish
                # is recorded, so a failed publish (or marks dropped with a failed
                # transaction) leaves it reachable, never open with no lease.
                session.execute(
                    update(Trial)
                    .where(Trial.id == e.id)
                    .values(
                        attempt=e.attempt + 1,
                        state=TrialState.queued.value,
                        published_at=None,
                        lease_expires_at=None,
                    )
                )
                detail = f"re-issued as attempt {e.attempt + 1}"
                self._event(session, e, TrialEventKind.lease_expired, detail, at)
                self.core.hooks.lease_expired(reissued=True)
                reissue.append(self._message(session, e, e.attempt + 1))
        if reissue:
            log.warning("lease expired for %d trial(s); re-issuing as new attempts", len(reissue))
            self.outbox.publish(reissue)

    def _fail(self, session: Session, e: Any, reason: str, at: datetime) -> None:
        session.execute(
            update(Trial)
            .where(Trial.id == e.id)
            .values(state=TrialState.failed.value, error=reason, finished_at=at)
        )
        session.execute(
            update(Instance)
            .where(Instance.id == e.instance_id)
            .values(status=InstanceStatus.failed.value)
        )
        self._event(session, e, TrialEventKind.lease_failed, reason, at)
        if self.core.bulk.pg:  # waiting clients wake up (see Campaign.wait)
            session.execute(
                text("SELECT pg_notify(:c, :i)"), {"c": NOTIFY_CHANNEL, "i": str(e.instance_id)}
            )

    @staticmethod
    def _event(session: Session, e: Any, event: TrialEventKind, detail: str, at: datetime) -> None:
        """Keep a lease expiry for reports (rare: one row per expired attempt)."""
        session.execute(
            insert(TrialEvent).values(
                campaign_id=e.campaign_id,
                trial_id=e.id,
                attempt=e.attempt,
                event=event.value,
                detail=detail,
                at=at,
            )
        )
