"""Wall-time limits, one concern in one place: which task a trial is sent as, the Celery
time limits it carries, and how long its lease lasts while it waits in the queue."""

from __future__ import annotations

from app.config import Settings
from tasks.messages import RUN_LONG_TRIAL_TASK, RUN_TRIAL_TASK, TrialMessage
from tasks.wire_fields import MAX_LEASE_SECONDS


class TimeLimits:
    """Pure functions of the settings and a trial message; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.lease_seconds = settings.lease_seconds
        self.queue_seconds = settings.queue_seconds
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
        """Lease of a trial not yet started: the queue bound (``queue_seconds``), which is
        separate from the running lease and generous. With a wall-time limit the trial may
        wait behind the campaign's other in-flight trials, each up to that limit: the lease
        covers that wait too. A running trial's lease starts at its first heartbeat."""
        secs = msg.max_seconds
        lease = max(self.queue_seconds, self.lease_seconds)
        if secs is not None:
            lease = max(lease, self.lease_seconds + secs * max_in_flight)
        return min(lease, MAX_LEASE_SECONDS)  # a timestamp must stay representable
