"""The scheduler's statements for isolation: broken campaigns, dead letters, the database's
identity, and failing a trial whose message the broker keeps refusing. Mixed into
:class:`app.scheduler.store.base.SchedulerStore` (same contract: inside the caller's
transaction, nothing commits)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from app.scheduler.store.selects import open_trials
from models import Campaign, DatabaseIdentity, DeadLetter, Trial
from models.states import CampaignStatus, TrialState


class IsolationStatements:
    def database_identity(self, session: Session) -> str | None:
        """This database's identity (None before migration 0007)."""
        return session.scalar(select(DatabaseIdentity.id).limit(1))

    def mark_broken(self, session: Session, campaign_id: int, reason: str) -> None:
        """The campaign is broken (see CampaignStatus): status and reason written."""
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(status=CampaignStatus.broken.value, broken_reason=reason)
        )

    def add_dead_letters(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Refused messages (rows of ``source, reason, body, at``)."""
        if rows:
            session.execute(insert(DeadLetter), rows)

    def fail_unpublished(self, session: Session, uuid: str, reason: str, at: datetime) -> bool:
        """Fail a trial still queued and unpublished (and its instance) with ``reason``;
        False when it is not (published since, or finished)."""
        row = session.execute(
            select(Trial.id, Trial.instance_id).where(
                Trial.uuid == uuid,
                Trial.state == TrialState.queued.value,
                Trial.published_at.is_(None),
            )
        ).first()
        if row is None:
            return False
        self.fail_trial(session, row.id, row.instance_id, reason, at)  # type: ignore[attr-defined]
        return True

    def routed_waiting(self, session: Session, live: list[str], limit: int) -> list[Any]:
        """Published, not started trials (of campaigns not broken) routed to a device class
        outside ``live``, with what re-publishing them needs (:func:`open_trials`)."""
        return list(
            session.execute(
                open_trials()
                .where(
                    Trial.state == TrialState.queued.value,
                    Trial.published_at.is_not(None),
                    Trial.device_class.is_not(None),
                    Trial.device_class.not_in(live),
                )
                .limit(limit)
            ).all()
        )

    def reroute(self, session: Session, trial_id: int, attempt: int, device_class: str) -> None:
        """Re-issued as ``attempt`` for ``device_class``, unpublished (the outbox owns it)."""
        session.execute(
            update(Trial)
            .where(Trial.id == trial_id)
            .values(
                attempt=attempt,
                device_class=device_class,
                state=TrialState.queued.value,
                published_at=None,
                lease_expires_at=None,
            )
        )
