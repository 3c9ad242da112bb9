"""Wall-time limits for trials run in threads (``BANDITQ_WORKER_POOL=threads``): Celery's
thread pool ignores a task's time limits, which the prefork pool enforces with signals.

At the soft limit the trial's thread gets :class:`SoftTimeLimitExceeded` the next time it
runs Python code (an asynchronous exception: a compiled loop or a blocking call finishes
first); at the hard limit, if the trial is still running, ``on_hard`` is called from the
watchdog's thread (the worker then reports the trial and exits: a thread cannot be killed).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Schedule ``exc`` in the thread (None clears a scheduled one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )


class Watchdog:
    """Armed on creation for the calling thread; :meth:`disarm` when the trial is over
    (idempotent). At most one exception is ever scheduled, so code that runs after it was
    delivered (an ``except`` or ``finally``) is not interrupted again: call :meth:`disarm`
    both in the trial's ``finally`` and after handling ``SoftTimeLimitExceeded``."""

    def __init__(
        self,
        soft: float | None,
        hard: float | None,
        on_hard: Callable[[], None],
    ) -> None:
        self.soft = soft
        self.hard = hard
        self.on_hard = on_hard
        self.thread_id = threading.get_ident()
        self.lock = threading.Lock()
        self.active = True
        self.fired = False
        self.done = threading.Event()
        self._thread: threading.Thread | None = None
        if soft is not None or hard is not None:
            self._thread = threading.Thread(
                target=self._watch, name="banditq-watchdog", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        waited = 0.0
        if self.soft is not None:
            if self.done.wait(self.soft):
                return
            waited = self.soft
            with self.lock:
                if not self.active:
                    return
                self.fired = True
                _raise_in(self.thread_id, SoftTimeLimitExceeded)
        if self.hard is None:
            return
        if self.done.wait(max(0.0, self.hard - waited)):
            return
        with self.lock:
            if not self.active:
                return
        self.on_hard()

    def disarm(self) -> None:
        """The trial is over: nothing more is raised or called."""
        with self.lock:
            if not self.active:
                return
            self.active = False
            self.done.set()
        # A limit that fired as the trial finished: its exception must not land later.
        if self.fired:
            _raise_in(self.thread_id, None)
