"""Statements several parts of the scheduler's store build on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from models import Campaign, Instance, Trial
from models.states import CampaignStatus


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
