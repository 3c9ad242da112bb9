"""The statements that record what workers report: results and heartbeats (portable
forms; :class:`~app.scheduler.store.postgres.PostgresStore` overrides the burst write).

Ownership: as :class:`~app.scheduler.store.base.SchedulerStore`, of which this is a part.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, insert, select, update
from sqlalchemy.orm import Session

from app.scheduler.store.selects import TRIAL_COLS, trials_select
from models import BlobRef, Campaign, Instance, Result, Trial
from models.states import OPEN_STATES, TrialState


class ResultStatements:
    """Results written by trial and attempt, quarantine, lease renewal."""

    #: :meth:`trials_for_results`, built once (each result burst runs it; Core, on the
    #: session's connection: the ORM's execution path cost more than the read)
    trials_for: Select[Any] = trials_select(TRIAL_COLS.uuid.in_(bindparam("uuids", expanding=True)))

    def trials_for_results(self, session: Session, uuids: list[str]) -> list[Row[Any]]:
        """(id, uuid, campaign_id, instance_id, arm_index, attempt, state, context) of the
        trials these results name (unknown ones are absent)."""
        return list(session.connection().execute(self.trials_for, {"uuids": uuids}).all())

    def record_results(
        self,
        session: Session,
        results: list[dict[str, Any]],
        finished: list[dict[str, Any]],
        statuses: list[dict[str, Any]],
        per_campaign: dict[int, int],
        links: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Insert ``results``, finish their trials (rows of ``id, state, worker, started_at,
        finished_at, error``), set instance ``statuses`` (``id, status``), add
        ``per_campaign`` applied updates to ``campaigns.n_updates`` and insert the blob
        references ``links`` (rows of ``trial_id, sha256, nbytes, campaign_id``) of the new
        results. Returns the result ids in the order of ``results``."""
        if not results:
            return []
        # sort_by_parameter_order: ids come back in the order of the rows we passed.
        out = list(
            session.scalars(
                insert(Result).returning(Result.id, sort_by_parameter_order=True), results
            ).all()
        )
        session.execute(update(Trial), finished)
        session.execute(update(Instance), statuses)
        for cid, n in per_campaign.items():
            session.execute(
                update(Campaign).where(Campaign.id == cid).values(n_updates=Campaign.n_updates + n)
            )
        if links:
            by_trial = {r["trial_id"]: rid for r, rid in zip(results, out, strict=True)}
            session.execute(
                insert(BlobRef),
                [
                    {
                        "sha256": b["sha256"],
                        "nbytes": b["nbytes"],
                        "campaign_id": b["campaign_id"],
                        "result_id": by_trial[b["trial_id"]],
                    }
                    for b in links
                ],
            )
        return out

    def quarantine(self, session: Session, campaign_id: int, result_id: int, error: str) -> None:
        """A result whose policy update raised: kept with the error, not applied."""
        session.execute(
            update(Result).where(Result.id == result_id).values(applied=False, error=error)
        )
        session.execute(
            update(Trial)
            .where(
                Trial.id == select(Result.trial_id).where(Result.id == result_id).scalar_subquery()
            )
            .values(error=error)
        )
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(n_updates=Campaign.n_updates - 1)
        )

    def renew_lease(
        self, session: Session, uuid: str, attempt: int, worker: str | None, until: datetime
    ) -> None:
        """That attempt (only if still open) is running, its lease extended to ``until``."""
        session.execute(
            update(Trial)
            .where(Trial.uuid == uuid, Trial.attempt == attempt, Trial.state.in_(OPEN_STATES))
            .values(state=TrialState.running.value, lease_expires_at=until, worker=worker)
        )
