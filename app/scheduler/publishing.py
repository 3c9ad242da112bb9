"""How decided trials leave the scheduler: the :class:`TrialPublisher` interface, injected
into the scheduler, and its Celery implementation. A test (or an embedder) passes its own
publisher instead, e.g. one that runs trials in process (``tests/inline.py``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import kombu

from app.scheduler.limits import TimeLimits
from app.scheduler.taskpublisher import TaskPublisher
from tasks.messages import TrialMessage

log = logging.getLogger("banditq.scheduler")


class TrialPublisher(Protocol):
    """Sends trial messages. Not required to be thread-safe (one scheduler thread)."""

    def send(self, messages: list[TrialMessage]) -> list[str]:
        """Send in order; return the trial ids sent. On a failure, stop and return those sent
        so far (the outbox retries the rest): never raise for a broker outage."""
        ...

    def close(self) -> None: ...


class CeleryPublisher:
    """Celery protocol-2 task messages on the trials queue (or a device class's queue)."""

    def __init__(
        self,
        connect: Callable[[], kombu.Connection],
        queue: str,
        queue_type: str,
        limits: TimeLimits,
    ) -> None:
        self.tasks = TaskPublisher(connect, queue, queue_type)
        self.limits = limits
        #: why the last send stopped (the outbox quotes it when it fails a trial)
        self.last_error = ""

    def send(self, messages: list[TrialMessage]) -> list[str]:
        sent: list[str] = []
        try:
            for m in messages:
                hard, soft = self.limits.celery_limits(m)
                self.tasks.publish(
                    self.limits.task_for(m),
                    m.trial,
                    m.to_json(),
                    # Celery would saferepr() the whole payload for its logs: costly.
                    argsrepr=f"trial {m.trial} attempt {m.attempt}",
                    time_limit=hard,
                    soft_time_limit=soft,
                    device_class=m.device_class,
                    kind=m.kind,
                )
                sent.append(m.trial)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "publish failed after %d of %d trials (%s); outbox will retry",
                len(sent),
                len(messages),
                exc,
            )
        return sent

    def close(self) -> None:
        self.tasks.close()
