"""Every statement the scheduler runs, behind one interface: the portable forms (SQLAlchemy
Core), which are what the embedded default (SQLite) runs. :class:`PostgresStore` replaces the
hot-path writes with one set-based statement per burst.

Ownership: called only by the scheduler thread, inside the caller's session and transaction;
nothing here commits. Stateless: one instance serves every part of a scheduler.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from app.scheduler.errors import DecisionFenced
from app.scheduler.store.external import ExternalStatements
from app.scheduler.store.isolation import IsolationStatements
from app.scheduler.store.results import ResultStatements
from app.scheduler.store.selects import INSTANCE_COLS, open_trials
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
from models.states import (
    OPEN_STATES,
    CampaignStatus,
    InstanceStatus,
    TrialEventKind,
    TrialState,
)

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
    "budget",
    "budget_unit",
    "published_at",
    "started_at",
    "lease_expires_at",
)


#: :meth:`SchedulerStore.pending_instances`, built once (Core: no ORM entities involved)
_PENDING: Select[Any] = (
    select(INSTANCE_COLS.id, INSTANCE_COLS.seq, INSTANCE_COLS.context, INSTANCE_COLS.spec)
    .where(
        INSTANCE_COLS.campaign_id == bindparam("cid"),
        INSTANCE_COLS.status == InstanceStatus.pending.value,
    )
    .order_by(INSTANCE_COLS.seq)
    .limit(bindparam("limit"))
)


class SchedulerStore(ResultStatements, IsolationStatements, ExternalStatements):
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
        return list(
            session.scalars(
                select(Campaign.id).where(
                    has_pending, Campaign.status != CampaignStatus.broken.value
                )
            ).all()
        )

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
        """(result id, cost, arm index, context, quality, censored, metrics) of applied
        results, id order."""
        return list(
            session.execute(
                select(
                    Result.id,
                    Result.cost,
                    Trial.arm_index,
                    Instance.context,
                    Result.quality,
                    Result.censored,
                    Result.metrics,
                )
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

    def add_snapshot(self, session: Session, snapshot: PolicySnapshot, keep: int = 3) -> None:
        """Add ``snapshot`` and delete the campaign's older ones beyond the newest ``keep``
        (a restart reads only the newest)."""
        session.add(snapshot)
        session.flush()
        old = (
            select(PolicySnapshot.id)
            .where(PolicySnapshot.campaign_id == snapshot.campaign_id)
            .order_by(PolicySnapshot.id.desc())
            .offset(keep)
        )
        ids = list(session.scalars(old))
        if ids:
            session.execute(delete(PolicySnapshot).where(PolicySnapshot.id.in_(ids)))

    # ------------------------------------------------------------------ decisions
    def pending_instances(self, session: Session, campaign_id: int, limit: int) -> list[Row[Any]]:
        """(id, seq, context, spec) of pending instances, oldest first."""
        # on the session's connection, past the ORM: every decision step reads this (an
        # ask waits on it), and the ORM's execution path is most of a one-row read's time
        rows = session.connection().execute(_PENDING, {"cid": campaign_id, "limit": limit})
        return list(rows.all())

    def record_decisions(
        self, session: Session, trials: list[dict[str, Any]], asked: Sequence[str] = ()
    ) -> None:
        """Insert trial rows (``TRIAL_FIELDS``) and mark their instances decided, waking
        the askers of external decisions with the notices ``asked`` at commit;
        :class:`DecisionFenced` when one of them is no longer pending (another scheduler
        decided it: the caller's transaction must roll back)."""
        self.notify_asked(session, list(asked))
        if not trials:
            return
        session.execute(insert(Trial), trials)
        ids = [t["instance_id"] for t in trials]
        res = session.execute(
            update(Instance)
            .where(Instance.id.in_(ids), Instance.status == InstanceStatus.pending.value)
            .values(status=InstanceStatus.decided.value)
        )
        if res.rowcount != len(set(ids)):  # type: ignore[attr-defined]
            raise DecisionFenced(len(set(ids)) - res.rowcount)  # type: ignore[attr-defined]

    def set_contexts(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Instances' contexts (rows of ``id, context``) as a decision extended them."""
        if rows:
            session.execute(update(Instance), rows)

    def mark_published(
        self,
        session: Session,
        uuids: list[str],
        now: datetime,
        until: datetime,
        attempts: list[int] | None = None,
    ) -> None:
        """Published trials still open get ``published_at`` and their queued lease; with
        ``attempts`` (one per uuid), only where the trial is still at that attempt (a mark
        of a publish must not land on a re-issued, unpublished attempt)."""
        if not uuids:
            return
        q = update(Trial).where(Trial.state.in_(OPEN_STATES))
        if attempts is None:
            q = q.where(Trial.uuid.in_(uuids))
        else:
            q = q.where(
                tuple_(Trial.uuid, Trial.attempt).in_(list(zip(uuids, attempts, strict=True)))
            )
        session.execute(q.values(published_at=now, lease_expires_at=until))

    # ------------------------------------------------------------------ reconciler
    def unpublished_trials(self, session: Session, limit: int) -> list[Row[Any]]:
        """The outbox: decided trials never marked published, oldest first."""
        return list(
            session.execute(
                open_trials()
                .where(Trial.state == TrialState.queued.value, Trial.published_at.is_(None))
                .order_by(Trial.id)
                .limit(limit)
            ).all()
        )

    def expired_trials(self, session: Session, at: datetime, limit: int) -> list[Row[Any]]:
        return list(
            session.execute(
                open_trials()
                .where(
                    Trial.state.in_(OPEN_STATES),
                    Trial.lease_expires_at < at,
                    Trial.told_at.is_(None),  # told: recorded from the tell, not expired
                )
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
