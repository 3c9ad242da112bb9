"""What ``banditq status`` shows: counts, throughput, queue depth, per-arm summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import kombu
from sqlalchemy import func, select

from models import Arm, Campaign, Instance, Result, Trial


def queue_depth(settings: Any) -> int | None:
    """Messages waiting in the trial queue (None when the broker cannot say)."""
    try:
        with kombu.Connection(
            settings.broker_url, transport_options=settings.broker_transport_options()
        ) as conn:
            conn.ensure_connection(max_retries=1)
            q = kombu.Queue(settings.queue, durable=True)
            _name, count, _consumers = q(conn.channel()).queue_declare(passive=True)
            return int(count)
    except Exception:
        return None


def campaign_status(client: Any, name: str) -> dict[str, Any]:
    with client.Session() as s:
        camp = s.scalar(select(Campaign).where(Campaign.name == name))
        if camp is None:
            from app.errors import NotFoundError

            raise NotFoundError(f"no campaign named {name!r}")
        inst = dict(
            s.execute(
                select(Instance.status, func.count())
                .where(Instance.campaign_id == camp.id)
                .group_by(Instance.status)
            ).all()
        )
        trials = dict(
            s.execute(
                select(Trial.state, func.count())
                .where(Trial.campaign_id == camp.id)
                .group_by(Trial.state)
            ).all()
        )
        since = datetime.now(UTC) - timedelta(seconds=60)
        recent = (
            s.scalar(
                select(func.count())
                .select_from(Result)
                .where(Result.campaign_id == camp.id, Result.recorded_at >= since)
            )
            or 0
        )
        per_arm = s.execute(
            select(Arm.name, func.count(Result.id), func.avg(Result.cost))
            .join(Trial, Trial.arm_id == Arm.id)
            .join(Result, (Result.trial_id == Trial.id) & (Result.status == "succeeded"))
            .where(Arm.campaign_id == camp.id)
            .group_by(Arm.name, Arm.index)
            .order_by(Arm.index)
        ).all()
    return {
        "campaign": name,
        "kind": camp.kind,
        "policy": camp.policy,
        "instances": {str(k): int(v) for k, v in inst.items()},
        "trials": {str(k): int(v) for k, v in trials.items()},
        "policy_updates": camp.n_updates,
        "trials_per_s_last_minute": round(recent / 60.0, 3),
        "queue_depth": queue_depth(client.settings),
        "arms": [
            {"arm": a, "count": int(c), "mean_cost": float(m) if m is not None else None}
            for a, c, m in per_arm
        ],
    }
