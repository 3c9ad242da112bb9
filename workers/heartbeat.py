"""Heartbeats: while a trial runs, a thread of its process tells the scheduler the attempt
is alive, so that its running lease never runs out under a long solve."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery
from kombu.utils.json import dumps

from app.config import Settings
from tasks import messages
from tasks.channel import ChannelPublisher
from tasks.messages import results_queue
from workers.context import context

log = logging.getLogger("banditq.worker")


#: seconds after a trial starts that its first heartbeat is due: the running lease starts
#: there (queued time never counts against it); shorter trials report their result instead
FIRST_BEAT_S = 1.0


class Heartbeat:
    """While a trial runs, this process's heartbeat thread tells the scheduler that the
    attempt is alive: first about a second after it starts (the trial is then ``running``
    and its running lease begins), then every third of the lease, so its lease is extended
    however long the trial takes. The thread runs beside the trial code (torch and numpy
    release the GIL; pure-Python loops are preempted), on a connection of its own; entering
    and leaving only registers the attempt, and trials shorter than a second send nothing."""

    def __init__(self, app: Celery, payload: Any, worker: str) -> None:
        ok = isinstance(payload, dict) and isinstance(payload.get("trial"), str)
        self.key = (payload["trial"], payload.get("attempt")) if ok else None
        self.app = app
        self.worker = worker

    def __enter__(self) -> Heartbeat:
        if self.key is not None:
            context().heartbeat(self.app).add(self.key, self.worker)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.key is not None:
            context().heartbeat(self.app).remove(self.key)


class Beater:
    """The per-process heartbeat thread (started lazily in the pool child, after the fork;
    held by the worker context)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.interval = max(0.5, settings.lease_seconds / 3.0)
        self.lock = threading.Lock()
        self.running: dict[tuple[str, Any], tuple[str, float]] = {}  # key -> (worker, last)
        threading.Thread(target=self._loop, name="banditq-heartbeat", daemon=True).start()

    def add(self, key: tuple[str, Any], worker: str) -> None:
        first = min(FIRST_BEAT_S, self.interval)
        with self.lock:
            self.running[key] = (worker, time.monotonic() - self.interval + first)

    def remove(self, key: tuple[str, Any]) -> None:
        with self.lock:
            self.running.pop(key, None)

    def _loop(self) -> None:
        settings = self.settings
        # Its own publisher (not thread-safe, so not the result publisher of this process).
        publisher = ChannelPublisher(
            self.app.connection_for_write, results_queue(settings.queue, settings.queue_type)
        )
        while True:
            time.sleep(min(self.interval / 4, FIRST_BEAT_S / 4))
            now = time.monotonic()
            with self.lock:
                due = [
                    (k, w) for k, (w, last) in self.running.items() if now - last >= self.interval
                ]
            for (trial, attempt), worker in due:
                beat = messages.Heartbeat(trial, attempt, worker).to_json()
                try:
                    publisher.publish(dumps(beat))
                except Exception as exc:  # the lease has slack: the next beat may get through
                    log.warning("heartbeat for trial %s failed: %s", trial, exc)
                    continue
                with self.lock:
                    if (trial, attempt) in self.running:
                        self.running[(trial, attempt)] = (worker, now)
