"""The slow safety net: find pending work no message announced, relay the outbox (trials
committed but never marked published), and expire leases (a trial with no result when its
lease runs out is re-issued as a new attempt, up to the campaign's max_attempts, then failed
with the reason; a late result of an old attempt is then ignored: fenced by attempt)."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

import sqlalchemy
from sqlalchemy.orm import Session

from app.scheduler.core import Core, now
from app.scheduler.outbox import Outbox
from app.scheduler.runtime import CampaignBroken
from models.states import TrialEventKind
from tasks.messages import MessageError, ResultMessage, TrialMessage

#: seconds after a tell before the sweep records it from the database instead of its message
TELL_GRACE_S = 30.0

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
        if self.outbox.unmarked or self.outbox.poisoned:  # before the outbox query
            with self.core.Session() as session, session.begin():
                self.outbox.flush_marks(session)
        with self.core.Session() as session:
            store = self.core.store
            if not self.core.devices.loaded:
                self.core.devices.load(session, store)
            cids = store.campaigns_with_pending(session)
            for cid in cids:
                with contextlib.suppress(CampaignBroken):
                    self.core.runtime(session, cid).maybe_pending = True
            stale = store.unpublished_trials(session, self.batch_size * 4)
            relay = [m for s in stale if (m := self._message(session, s, s.attempt))]
        if relay:
            log.info("outbox: publishing %d committed but unpublished trial(s)", len(relay))
            self.outbox.publish(relay)
        return bool(cids), len(relay)

    def _message(
        self, session: Session, row: Any, attempt: int, device_class: str | None = None
    ) -> TrialMessage | None:
        """The attempt's message (for ``device_class`` when given, else the row's); None
        when its campaign is (or now becomes) broken."""
        try:
            rt = self.core.runtime(session, row.campaign_id)
            return rt.message(
                row.uuid,
                attempt,
                row.spec,
                row.arm_index,
                row.reason,
                row.seq,
                device_class or row.device_class,
                row.instance_id,
                row.budget,
                row.budget_unit,
            )
        except CampaignBroken:
            return None
        except sqlalchemy.exc.SQLAlchemyError:
            raise
        except Exception as exc:  # its kind's message hook failed: that campaign alone
            self.core.mark_broken(row.campaign_id, f"message failed: {type(exc).__name__}: {exc}")
            return None

    def reroute_orphans(self) -> int:
        """Trials waiting in the queue of a device class with no live worker left go to a
        live class that can run their arm, as a new attempt, published at once (as lease
        expiry re-issues); those no live class can run keep waiting. Returns how many were
        re-routed."""
        devices = self.core.devices
        if not devices.loaded:
            return 0
        live = devices.classes()
        if not live:
            return 0
        moved: list[TrialMessage] = []
        with self.core.Session() as session, session.begin():
            rows = self.core.store.routed_waiting(session, list(live), self.batch_size)
            for row in rows:
                try:
                    rt = self.core.runtime(session, row.campaign_id)
                except CampaignBroken:
                    continue
                fits = [
                    c
                    for c, (profile, _slots) in live.items()
                    if rt.allowed_on(str(profile["type"]))[row.arm_index]
                ]
                if not fits:
                    continue
                self.core.store.reroute(session, row.id, row.attempt + 1, fits[0])
                detail = f"re-routed from {row.device_class} (no live worker) to {fits[0]}"
                self.core.store.add_event(session, row, TrialEventKind.retried, detail, now())
                msg = self._message(session, row, row.attempt + 1, fits[0])
                if msg is not None:
                    moved.append(msg)
        if moved:
            log.warning("re-routed %d trial(s) whose device class has no live worker", len(moved))
            self.outbox.publish(moved)
        return len(moved)

    def _abandon(self, session: Session, rt: Any, e: Any, at: Any) -> None:
        """An external decision not told within the campaign's tell timeout: abandoned, no
        cost to the policy; a later tell is refused saying so."""
        reason = f"abandoned: no tell within the campaign's tell_timeout of {rt.tell_timeout:g} s"
        if self.core.store.abandon_trial(session, e.id, e.instance_id, reason, at):
            self.core.store.add_event(session, e, TrialEventKind.abandoned, reason, at)
            rt.in_flight = max(0, rt.in_flight - 1)
            rt.maybe_pending = True

    def recover_tells(self) -> list[ResultMessage]:
        """Tells committed a while ago whose message never came (the caller's broker was
        down): their results, rebuilt from what the tell stored, for the intake to record
        (exactly once, by trial and attempt, as any result)."""
        before = now() - timedelta(seconds=TELL_GRACE_S)
        with self.core.Session() as session:
            rows = self.core.store.told_unrecorded(session, before, self.batch_size)
        out = []
        for row in rows:
            uuid, told = row.uuid, dict(row.told or {})
            try:
                out.append(ResultMessage.parse({**told, "trial": uuid, "attempt": row.attempt}))
            except MessageError as exc:  # a client wrote it: checked as a message is
                log.warning("tell of trial %s is unusable (%s); ignored", uuid, exc)
        if out:
            log.warning("recording %d tell(s) whose message did not arrive", len(out))
        return out

    def expire_leases(self) -> None:
        at = now()
        reissue: list[TrialMessage] = []
        lease = self.core.settings.lease_seconds
        with self.core.Session() as session, session.begin():
            expired = self.core.store.expired_trials(session, at, self.batch_size)
            for e in expired:
                try:
                    rt = self.core.runtime(session, e.campaign_id)
                except CampaignBroken:
                    continue  # left as it is (the query skips it once the mark is saved)
                if rt.external:
                    self._abandon(session, rt, e, at)
                    continue
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
                msg = self._message(session, e, e.attempt + 1)
                if msg is not None:
                    reissue.append(msg)
        if reissue:
            log.warning("lease expired for %d trial(s); re-issuing as new attempts", len(reissue))
            self.outbox.publish(reissue)
