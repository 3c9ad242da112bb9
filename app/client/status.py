"""What ``banditq status`` shows: counts, throughput, queue depth, per-arm summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import kombu

from app.client import store


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
        camp = store.campaign_named(s, name)
        if camp is None:
            from tasks.errors import NotFoundError

            raise NotFoundError(f"no campaign named {name!r}")
        inst = store.status_counts(s, camp.id)
        trials = store.trial_state_counts(s, camp.id)
        recent = store.results_since(s, camp.id, datetime.now(UTC) - timedelta(seconds=60))
        per_arm = store.per_arm_costs(s, camp.id)
    return {
        "campaign": name,
        "kind": camp.kind,
        "policy": camp.policy,
        "state": camp.status,
        "broken_reason": camp.broken_reason,
        "instances": inst,
        "trials": trials,
        "policy_updates": camp.n_updates,
        "trials_per_s_last_minute": round(recent / 60.0, 3),
        "queue_depth": queue_depth(client.settings),
        "arms": [
            {"arm": a, "count": int(c), "mean_cost": float(m) if m is not None else None}
            for a, c, m in per_arm
        ],
    }


def campaigns_overview(client: Any) -> list[dict[str, Any]]:
    """One row per campaign: kind, policy, state (why, when broken), instances done of all,
    failed, and the time of the last result."""
    with client.Session() as s:
        rows = store.campaign_overview(s)
    return [
        {
            "campaign": r.name,
            "kind": r.kind,
            "policy": r.policy,
            "state": r.status,
            "broken_reason": r.broken_reason,
            "instances": int(r.total or 0),
            "done": int(r.done or 0),
            "failed": int(r.failed or 0),
            "last_activity": r.last.isoformat() if r.last is not None else None,
        }
        for r in rows
    ]
