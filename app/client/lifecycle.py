"""A campaign's lifecycle from the client: pause, resume (also a broken campaign, once
fixed), cancel (pending instances and trials not started withdrawn), delete (its rows and
blob references gone, so `banditq store gc` can free its arrays), retry the failed instances.

Each is one transaction, safe while the scheduler runs: the scheduler is told to reload the
campaign (a wake-up with ``reload``), and a worker's late result for a withdrawn trial is
ignored as stale.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from models import Campaign as CampaignRow
from models import Instance, Trial
from models.states import CampaignStatus, InstanceStatus, TrialState
from tasks.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from app.client.session import Client


def _row(s: object, name: str) -> CampaignRow:
    row = s.scalars(select(CampaignRow).where(CampaignRow.name == name)).first()  # type: ignore[attr-defined]
    if row is None:
        raise NotFoundError(f"no campaign named {name!r}")
    return row  # type: ignore[no-any-return]


def _move(s: Any, campaign_id: int, old: InstanceStatus, new: InstanceStatus) -> int:
    """Instances of the campaign in ``old`` moved to ``new``; how many."""
    res = s.execute(
        update(Instance)
        .where(Instance.campaign_id == campaign_id, Instance.status == old.value)
        .values(status=new.value)
    )
    return int(res.rowcount or 0)


def pause(client: Client, name: str) -> str:
    """New submits are refused; what was submitted still runs. Returns the new state."""
    with client.Session() as s, s.begin():
        row = _row(s, name)
        if row.status == CampaignStatus.broken.value:
            raise InputError("campaign", f"{name!r} is broken ({row.broken_reason}); resume it")
        row.status = CampaignStatus.paused.value
    return CampaignStatus.paused.value


def resume(client: Client, name: str) -> str:
    """Active again (a broken campaign too: its reason is cleared and the scheduler loads it
    afresh, so fix what broke it first)."""
    with client.Session() as s, s.begin():
        row = _row(s, name)
        row.status = CampaignStatus.active.value
        row.broken_reason = None
    client._wake(name, reload=True)
    return CampaignStatus.active.value


def cancel(client: Client, name: str) -> dict[str, int]:
    """Paused, and what has not started is withdrawn: pending instances and queued trials fail
    with "cancelled" (running trials finish; their results are recorded). Returns counts."""
    at = datetime.now(UTC)
    with client.Session() as s, s.begin():
        row = _row(s, name)
        row.status = CampaignStatus.paused.value
        queued = (
            s.execute(
                update(Trial)
                .where(Trial.campaign_id == row.id, Trial.state == TrialState.queued.value)
                .values(state=TrialState.failed.value, error="cancelled", finished_at=at)
                .returning(Trial.instance_id)
            )
            .scalars()
            .all()
        )
        if queued:
            s.execute(
                update(Instance)
                .where(Instance.id.in_(queued))
                .values(status=InstanceStatus.failed.value)
            )
        pending = _move(s, row.id, InstanceStatus.pending, InstanceStatus.failed)
    client._wake(name, reload=True)
    return {"trials_withdrawn": len(queued), "instances_withdrawn": pending}


def delete_campaign(client: Client, name: str) -> None:
    """Its rows (instances, trials, results, snapshots, blob references) are deleted; the
    arrays only it used are left for `banditq store gc`."""
    with client.Session() as s, s.begin():
        row = _row(s, name)
        s.execute(delete(CampaignRow).where(CampaignRow.id == row.id))
    client._wake(name, reload=True)


def retry_failed(client: Client, name: str) -> int:
    """Failed instances go back to pending (decided again, as new trials); returns how many.
    Their failed trials and results stay in the record."""
    with client.Session() as s, s.begin():
        row = _row(s, name)
        if row.status != CampaignStatus.active.value:
            raise InputError("campaign", f"{name!r} is {row.status}; resume it first")
        n = _move(s, row.id, InstanceStatus.failed, InstanceStatus.pending)
    client._wake(name, reload=True)
    return n
