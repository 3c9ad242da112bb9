"""Wall-time limits, one concern in one place: which task a trial is sent as, the Celery
time limits it carries, and how long its lease lasts while it waits in the queue."""

from __future__ import annotations

from app.config import Settings
from tasks.messages import RUN_LONG_TRIAL_TASK, RUN_TRIAL_TASK, TrialMessage


class TimeLimits:
    """Pure functions of the settings and a trial message; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.lease_seconds = settings.lease_seconds
        self.consumer_timeout = settings.consumer_timeout

    def celery_limits(self, msg: TrialMessage) -> tuple[float | None, float | None]:
        """(hard, soft): a trial past ``max_seconds`` gets SoftTimeLimitExceeded (recorded as
        timed out); the hard limit a little later kills a child that ignores it."""
        secs = msg.max_seconds
        return (None, None) if secs is None else (secs + 10.0, secs)

    def task_for(self, msg: TrialMessage) -> str:
        """Trials that may outlive the broker's acknowledgement timeout are acked on
        receipt (their lease and heartbeats stand in for redelivery)."""
        secs = msg.max_seconds
        return (
            RUN_LONG_TRIAL_TASK
            if secs is not None and secs > self.consumer_timeout / 2
            else RUN_TRIAL_TASK
        )

    def queued_lease(self, msg: TrialMessage, max_in_flight: int) -> float:
        """Lease of a trial not yet started. With a wall-time limit it may wait in the queue
        behind the campaign's other in-flight trials, each up to that limit, before its first
        heartbeat: the lease covers that wait (running trials renew theirs by heartbeat)."""
        secs = msg.max_seconds
        return self.lease_seconds if secs is None else self.lease_seconds + secs * max_in_flight
