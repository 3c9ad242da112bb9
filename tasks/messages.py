"""Queue names and JSON message shapes exchanged between client, scheduler and workers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kombu import Exchange, Queue

from tasks.fs_transport import register as _register_fs_transport

_register_fs_transport()

RUN_TRIAL_TASK = "banditq.run_trial"
#: The same task acknowledged on receipt, for trials that may outlive the broker's
#: delivery-acknowledgement timeout (their lease and heartbeats stand in for redelivery).
RUN_LONG_TRIAL_TASK = "banditq.run_long_trial"

#: Protocol version carried in every message; a scheduler refuses versions it does not know.
PROTOCOL = 1

#: PostgreSQL channel the scheduler NOTIFYs (payload: the instance id) in the transaction
#: that finishes an instance; clients waiting on instances LISTEN to it.
NOTIFY_CHANNEL = "banditq_done"


def _direct(name: str, queue_type: str = "classic") -> Queue:
    args = {"x-queue-type": "quorum"} if queue_type == "quorum" else None
    return Queue(name, Exchange(name, type="direct"), name, durable=True, queue_arguments=args)


def trials_queue(name: str, queue_type: str = "classic") -> Queue:
    """Scheduler -> workers: Celery task messages, one per trial attempt."""
    return _direct(name, queue_type)


def results_queue(trial_queue: str, queue_type: str = "classic") -> Queue:
    """Workers -> scheduler: one result message per finished attempt (and heartbeats)."""
    return _direct(f"{trial_queue}.results", queue_type)


def events_queue(trial_queue: str, queue_type: str = "classic") -> Queue:
    """Clients -> scheduler: wake-ups after new instances are committed."""
    return _direct(f"{trial_queue}.events", queue_type)


def device_queue_name(trial_queue: str, device_class: str) -> str:
    """Scheduler -> the workers of one device class (``cpu``, ``cuda-9.0``): trials decided
    for that class, with arms it can run and context features of its device."""
    return f"{trial_queue}.dev.{device_class}"


def device_class(profile: dict[str, Any]) -> str:
    """A worker's device class: ``cpu``, or ``cuda-<compute capability>``."""
    if profile.get("type") == "cuda":
        return f"cuda-{float(profile.get('capability', 0.0)):.1f}"
    return "cpu"


def worker_announcement(worker: str, profile: dict[str, Any], slots: int) -> dict[str, Any]:
    """Workers -> scheduler (on the results queue), at start-up and then periodically: the
    device this worker runs trials on and how many at once."""
    return {
        "v": PROTOCOL,
        "type": "worker",
        "worker": worker,
        "device_class": device_class(profile),
        "profile": profile,
        "slots": slots,
        "at": now_iso(),
    }


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
    trial_uuid: str,
    attempt: int,
    campaign: str,
    kind: str,
    spec: dict[str, Any],
    arm: dict[str, Any],
    limits: dict[str, Any],
    options: dict[str, Any] | None = None,
    device_class: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": PROTOCOL,
        "trial": trial_uuid,
        "attempt": attempt,
        "campaign": campaign,
        "kind": kind,
        "spec": spec,
        "arm": arm,
        "limits": limits,
    }
    if options is not None:  # kind options (model, floor) and per-trial flags (monitor)
        body["options"] = options
    if device_class is not None:  # routed to that class's queue (see device_queue_name)
        body["device_class"] = device_class
    return body
