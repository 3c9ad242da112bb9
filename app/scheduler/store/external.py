"""The statements of external (ask/tell) trials: waking the askers of a decision,
abandoning decisions never told, and finding tells whose message never arrived.

Ownership: as :class:`~app.scheduler.store.base.SchedulerStore`, of which this is a part.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select, text, update
from sqlalchemy.orm import Session

from models import Instance, Trial
from models.states import InstanceStatus, TrialState
from tasks.messages import ASK_CHANNEL

_NOTIFY_ASKED = text("SELECT count(pg_notify(:c, v)) FROM unnest(CAST(:notices AS text[])) AS v")


class ExternalStatements:
    """Ask/tell trials."""

    def notify_asked(self, session: Session, notices: list[str]) -> None:
        """Wake the clients waiting for these decisions, at commit (PostgreSQL's NOTIFY;
        a client on SQLite polls)."""
        if notices and session.get_bind().dialect.name == "postgresql":
            session.execute(_NOTIFY_ASKED, {"c": ASK_CHANNEL, "notices": notices})

    def abandon_trial(
        self, session: Session, trial_id: int, instance_id: int, reason: str, at: datetime
    ) -> bool:
        """An untold external trial is abandoned (its instance failed, with ``reason``);
        False when a tell came first (it is then recorded from the tell)."""
        res = session.execute(
            update(Trial)
            .where(
                Trial.id == trial_id,
                Trial.state == TrialState.running.value,
                Trial.told_at.is_(None),
            )
            .values(state=TrialState.abandoned.value, error=reason, finished_at=at)
        )
        if not res.rowcount:  # type: ignore[attr-defined]
            return False
        session.execute(
            update(Instance)
            .where(Instance.id == instance_id)
            .values(status=InstanceStatus.failed.value)
        )
        return True

    def told_unrecorded(self, session: Session, before: datetime, limit: int) -> list[Row[Any]]:
        """(uuid, attempt, told) of tells older than ``before`` whose result is not yet
        recorded: their message was lost (the broker was down when the caller told)."""
        return list(
            session.execute(
                select(Trial.uuid, Trial.attempt, Trial.told)
                .where(
                    Trial.state == TrialState.running.value,
                    Trial.told_at.is_not(None),
                    Trial.told_at < bindparam("before"),
                )
                .order_by(Trial.id)
                .limit(limit),
                {"before": before},
            ).all()
        )
