"""The crash journal: a per-host file counting starts of one trial attempt, so that a trial
that kills its worker process every time is failed instead of redelivered forever."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery, Task

#: starts of one attempt (each killed its process) before the trial is failed
MAX_CRASHES = 3


def journal(app: Celery, task: Task, payload: Any) -> Path | None:
    """A per-host file counting starts of this trial attempt: a trial that kills its worker
    process every time would otherwise be redelivered forever (reject_on_worker_lost).

    On AMQP a first delivery cannot follow a crash, and its ``redelivered`` flag says so:
    no file is written for it (the file costs ~0.25 ms per trial, a large share of a short
    one), so counting starts at the first redelivery. kombu's virtual transports (the
    embedded broker) never set that flag: there every start is journalled, except on the
    threads pool, where a trial that kills the process takes its unacknowledged message with
    it (the virtual transport redelivers only from a surviving process): the lease re-issues
    it as a new attempt, bounded by ``max_attempts``, and no later start could read the file."""
    if not isinstance(payload, dict) or not isinstance(payload.get("trial"), str):
        return None
    settings = app.conf["banditq_settings"]
    if settings.embedded_broker and settings.worker_pool == "threads":
        return None
    delivery = task.request.delivery_info or {}
    if not settings.embedded_broker and not delivery.get("redelivered"):
        return None
    return journal_path(app, payload)


def journal_path(app: Celery, payload: dict[str, Any]) -> Path:
    folder = app.conf["banditq_settings"].home / "crash-journal"
    folder.mkdir(parents=True, exist_ok=True)
    name = "".join(
        c for c in f"{payload['trial']}-{payload.get('attempt')}" if c.isalnum() or c == "-"
    )
    return folder / name
