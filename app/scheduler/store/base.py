"""Every statement the scheduler runs, behind one interface: the portable forms (SQLAlchemy
Core), which are what the embedded default (SQLite) runs. :class:`PostgresStore` replaces the
hot-path writes with one set-based statement per burst.

Ownership: called only by the scheduler thread, inside the caller's session and transaction;
nothing here commits. Stateless: one instance serves every part of a scheduler.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, insert, select, update
from sqlalchemy.orm import Session

from app.scheduler.store.results import ResultStatements
from models import (
    Arm,
    Campaign,
    Instance,
    PolicySnapshot,
    Result,
    Trial,
    TrialEvent,
    WorkerRow,
)
from models.states import OPEN_STATES, InstanceStatus, TrialEventKind, TrialState

#: columns of a trial row as :meth:`SchedulerStore.record_decisions` takes them
TRIAL_FIELDS = (
    "uuid",
    "campaign_id",
    "instance_id",
    "arm_id",
    "arm_index",
    "propensity",
    "policy_name",
    "policy_version",
    "reason",
    "state",
    "attempt",
    "created_at",
    "device_class",
)


def _open_trials() -> Select[Any]:
    """An open trial with what re-publishing it needs."""
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


class SchedulerStore(ResultStatements):
    """The scheduler's reads and writes (portable; the SQLite implementation)."""

    #: PostgreSQL: set-based writes, NOTIFY, asynchronous commit of decisions
    pg = False

    # ------------------------------------------------------------------ campaigns
    def campaign_id(self, session: Session, name: str) -> int | None:
        return session.scalar(select(Campaign.id).where(Campaign.name == name))

    def campaign_with_arms(self, session: Session, campaign_id: int) -> tuple[Campaign, list[Arm]]:
        """The campaign row and its arms in index order; LookupError when it was deleted."""
        camp = session.get(Campaign, campaign_id)
        if camp is None:
            raise LookupError(f"campaign {campaign_id} vanished")
        arms = select(Arm).where(Arm.campaign_id == camp.id).order_by(Arm.index)
        return camp, list(session.scalars(arms))

    def campaigns_with_pending(self, session: Session) -> list[int]:
        # One index probe per campaign (a DISTINCT over instances would read them all).
        has_pending = (
            select(Instance.id)
            .where(
                Instance.campaign_id == Campaign.id,
                Instance.status == InstanceStatus.pending.value,
            )
            .exists()
        )
        return list(session.scalars(select(Campaign.id).where(has_pending)).all())

    def open_trial_count(self, session: Session, campaign_id: int | None = None) -> int:
        """Trials holding an in-flight slot (of one campaign, or of all)."""
        q = select(func.count()).select_from(Trial).where(Trial.state.in_(OPEN_STATES))
        if campaign_id is not None:
            q = q.where(Trial.campaign_id == campaign_id)
        return session.scalar(q) or 0

    # ------------------------------------------------------------------ policy state
    def latest_snapshot(self, session: Session, campaign_id: int) -> PolicySnapshot | None:
        return session.scalars(
            select(PolicySnapshot)
            .where(PolicySnapshot.campaign_id == campaign_id)
            .order_by(PolicySnapshot.id.desc())
            .limit(1)
        ).first()

    def applied_results_after(self, session: Session, campaign_id: int, after: int) -> list[Any]:
        """(result id, cost, arm index, context, quality) of applied results, id order."""
        return list(
            session.execute(
                select(Result.id, Result.cost, Trial.arm_index, Instance.context, Result.quality)
                .join(Trial, Trial.id == Result.trial_id)
                .join(Instance, Instance.id == Trial.instance_id)
                .where(
                    Result.campaign_id == campaign_id,
                    Result.applied.is_(True),
                    Result.id > after,
                )
                .order_by(Result.id)
            ).all()
        )

    def add_snapshot(self, session: Session, snapshot: PolicySnapshot) -> None:
        session.add(snapshot)

    # ------------------------------------------------------------------ decisions
    def pending_instances(self, session: Session, campaign_id: int, limit: int) -> list[Row[Any]]:
        """(id, seq, context, spec) of pending instances, oldest first."""
        return list(
            session.execute(
                select(Instance.id, Instance.seq, Instance.context, Instance.spec)
                .where(
                    Instance.campaign_id == campaign_id,
                    Instance.status == InstanceStatus.pending.value,
                )
                .order_by(Instance.seq)
                .limit(limit)
            ).all()
        )

    def record_decisions(self, session: Session, trials: list[dict[str, Any]]) -> None:
        """Insert trial rows (``TRIAL_FIELDS``) and mark their instances decided."""
        if not trials:
            return
        session.execute(insert(Trial), trials)
        session.execute(
            update(Instance),
            [{"id": t["instance_id"], "status": InstanceStatus.decided.value} for t in trials],
        )

    def set_contexts(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Instances' contexts (rows of ``id, context``) as a decision extended them."""
        if rows:
            session.execute(update(Instance), rows)

    def mark_published(
        self, session: Session, uuids: list[str], now: datetime, until: datetime
    ) -> None:
        """Published trials still open get ``published_at`` and their queued lease."""
        if uuids:
            session.execute(
                update(Trial)
                .where(Trial.uuid.in_(uuids), Trial.state.in_(OPEN_STATES))
                .values(published_at=now, lease_expires_at=until)
            )

    # ------------------------------------------------------------------ reconciler
    def unpublished_trials(self, session: Session, limit: int) -> list[Row[Any]]:
        """The outbox: decided trials never marked published, oldest first."""
        return list(
            session.execute(
                _open_trials()
                .where(Trial.state == TrialState.queued.value, Trial.published_at.is_(None))
                .order_by(Trial.id)
                .limit(limit)
            ).all()
        )

    def expired_trials(self, session: Session, at: datetime, limit: int) -> list[Row[Any]]:
        return list(
            session.execute(
                _open_trials()
                .where(Trial.state.in_(OPEN_STATES), Trial.lease_expires_at < at)
                .limit(limit)
            ).all()
        )

    def reissue(self, session: Session, trial_id: int, attempt: int) -> None:
        """Back to ``queued`` and unpublished as ``attempt``: the outbox owns it."""
        session.execute(
            update(Trial)
            .where(Trial.id == trial_id)
            .values(
                attempt=attempt,
                state=TrialState.queued.value,
                published_at=None,
                lease_expires_at=None,
            )
        )

    def fail_trial(
        self, session: Session, trial_id: int, instance_id: int, reason: str, at: datetime
    ) -> None:
        """The trial failed with ``reason`` and its instance with it."""
        session.execute(
            update(Trial)
            .where(Trial.id == trial_id)
            .values(state=TrialState.failed.value, error=reason, finished_at=at)
        )
        session.execute(
            update(Instance)
            .where(Instance.id == instance_id)
            .values(status=InstanceStatus.failed.value)
        )

    def add_event(
        self,
        session: Session,
        trial: Any,
        event: TrialEventKind,
        detail: str,
        at: datetime,
    ) -> None:
        """A trial event for reports (``trial``: a row with id, campaign_id, attempt)."""
        session.execute(
            insert(TrialEvent).values(
                campaign_id=trial.campaign_id,
                trial_id=trial.id,
                attempt=trial.attempt,
                event=event.value,
                detail=detail,
                at=at,
            )
        )

    # ------------------------------------------------------------------ workers
    def workers_seen_since(self, session: Session, since: datetime) -> list[WorkerRow]:
        return list(session.scalars(select(WorkerRow).where(WorkerRow.last_seen >= since)).all())

    def save_worker(
        self, session: Session, name: str, device_class: str, profile: dict[str, Any], at: datetime
    ) -> bool:
        """Insert or refresh a worker's row; True when it is new."""
        row = session.get(WorkerRow, name)
        new = row is None
        if row is None:
            row = WorkerRow(name=name, started_at=at)
            session.add(row)
        row.device_class = device_class
        row.profile = profile
        row.last_seen = at
        return new
