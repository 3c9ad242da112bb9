"""Statements several parts of the scheduler's store build on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, select

from models import Campaign, Instance, Trial
from models.states import CampaignStatus

#: the tables' columns, for the Core statements built once (no ORM entities involved: a
#: per-step read spent more in the ORM's execution path than in the database)
TRIAL_COLS = Trial.__table__.c
INSTANCE_COLS = Instance.__table__.c


def trials_select(uuid_among: ColumnElement[bool]) -> Select[Any]:
    """(id, uuid, campaign_id, instance_id, arm_index, attempt, state, context) of the trials
    ``uuid_among`` selects (a condition on ``trials.uuid`` with the parameter ``uuids``)."""
    return (
        select(
            TRIAL_COLS.id,
            TRIAL_COLS.uuid,
            TRIAL_COLS.campaign_id,
            TRIAL_COLS.instance_id,
            TRIAL_COLS.arm_index,
            TRIAL_COLS.attempt,
            TRIAL_COLS.state,
            INSTANCE_COLS.context,
        )
        .join_from(Trial.__table__, Instance.__table__, INSTANCE_COLS.id == TRIAL_COLS.instance_id)
        .where(uuid_among)
    )


def open_trials() -> Select[Any]:
    """An open trial with what re-publishing it needs."""
    return (
        select(
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
            Trial.budget,
            Trial.budget_unit,
        )
        .join(Instance, Instance.id == Trial.instance_id)
        .where(
            # a broken campaign's trials stay as they are: nothing relays or re-issues them
            Trial.campaign_id.not_in(broken_campaigns())
        )
    )


def broken_campaigns() -> Select[Any]:
    return select(Campaign.id).where(Campaign.status == CampaignStatus.broken.value)
