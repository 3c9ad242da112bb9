"""A worker's counters, shared by its pool processes and served by the main process.

Trials run in Celery's prefork children, while the HTTP endpoint lives in the main process:
the counters sit in anonymous shared memory created before the pool forks, so every child
adds to the same numbers. Process-safe (one lock for all fields); the cost per trial is two
lock round trips.
"""

from __future__ import annotations

import multiprocessing
import time
from http.server import ThreadingHTTPServer
from typing import Any

from celery.signals import task_postrun, task_prerun

from app.metrics import TRIAL_BUCKETS_MS, Metrics

COUNTERS = ("trials", "trials_succeeded", "trials_failed")
#: layout: counters, the running gauge, then the histogram (buckets, count, sum) in ms
_RUNNING = len(COUNTERS)
_HIST = _RUNNING + 1
_SIZE = _HIST + len(TRIAL_BUCKETS_MS) + 2


class WorkerMetrics:
    """Create in the worker's main process before the pool starts; children inherit it."""

    def __init__(self) -> None:
        self._values: Any = multiprocessing.RawArray("d", _SIZE)
        self._lock = multiprocessing.Lock()

    def started(self) -> None:
        with self._lock:
            self._values[_RUNNING] += 1

    def finished(self, ok: bool, seconds: float) -> None:
        ms = seconds * 1000.0
        with self._lock:
            v = self._values
            v[_RUNNING] -= 1
            v[0] += 1
            v[1 if ok else 2] += 1
            for i, bound in enumerate(TRIAL_BUCKETS_MS):
                if ms <= bound:
                    v[_HIST + i] += 1
            v[_SIZE - 2] += 1
            v[_SIZE - 1] += ms

    def snapshot(self) -> Metrics:
        """The current values as a :class:`Metrics` (for rendering)."""
        with self._lock:
            values = list(self._values)
        m = Metrics()
        m.counters = {name: values[i] for i, name in enumerate(COUNTERS)}
        m.gauges = {"trials_running": values[_RUNNING]}
        m.hist = {"trial_duration_ms": values[_HIST:]}
        m.buckets = {"trial_duration_ms": TRIAL_BUCKETS_MS}
        return m

    def render(self) -> str:
        return self.snapshot().render()

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """Serve ``/metrics`` from this process on a daemon thread."""
        return Metrics.serve_render(self.render, port, host)


_SHARED: WorkerMetrics | None = None
_STARTED: dict[str, float] = {}  # per pool process: task id -> monotonic start


def _prerun(task_id: str | None = None, **_kw: Any) -> None:
    if _SHARED is not None and task_id is not None:
        _STARTED[task_id] = time.monotonic()
        _SHARED.started()


def _postrun(task_id: str | None = None, retval: Any = None, **_kw: Any) -> None:
    start = _STARTED.pop(task_id or "", None)
    if _SHARED is not None and start is not None:
        # The trial task returns the trial's status (a failed trial is still a finished task).
        _SHARED.finished(retval == "succeeded", time.monotonic() - start)


def install() -> WorkerMetrics:
    """The worker's shared counters (created once, before the pool forks), fed by Celery's
    task_prerun/task_postrun signals in whichever process runs the trial."""
    global _SHARED
    if _SHARED is None:
        _SHARED = WorkerMetrics()
        task_prerun.connect(_prerun, weak=False)
        task_postrun.connect(_postrun, weak=False)
    return _SHARED


def shared() -> WorkerMetrics | None:
    """The counters of this worker, or None outside a worker (inline execution, tests)."""
    return _SHARED
