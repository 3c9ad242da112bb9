"""Queue names and JSON message shapes exchanged between client, scheduler and workers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kombu import Exchange, Queue

RESULTS_QUEUE = "banditq.results"
EVENTS_QUEUE = "banditq.events"
RUN_TRIAL_TASK = "banditq.run_trial"

#: Protocol version carried in every message; a scheduler refuses versions it does not know.
PROTOCOL = 1


def results_queue() -> Queue:
    return Queue(RESULTS_QUEUE, Exchange(RESULTS_QUEUE, type="direct"), RESULTS_QUEUE, durable=True)


def events_queue() -> Queue:
    return Queue(EVENTS_QUEUE, Exchange(EVENTS_QUEUE, type="direct"), EVENTS_QUEUE, durable=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def trial_payload(
    trial_uuid: str, attempt: int, campaign: str, kind: str, spec: dict[str, Any],
    arm: dict[str, Any], limits: dict[str, Any],
) -> dict[str, Any]:
    return {
        "v": PROTOCOL,
        "trial": trial_uuid,
        "attempt": attempt,
        "campaign": campaign,
        "kind": kind,
        "spec": spec,
        "arm": arm,
        "limits": limits,
    }
