"""The worker's state between trials, as one object built from :class:`Settings` at start:
the settings, the kernel cache (bounded by ``BANDITQ_KERNEL_CACHE_BYTES`` of *these*
settings), the chain memory, the heartbeat thread and the result publisher. Not module
globals scattered over the worker: one context per process, rebuilt in a forked pool child
(its threads and connections are not the parent's).

Thread-safety: built and read by the process's trial thread; the heartbeat thread owns its
own part (see :mod:`workers.heartbeat`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.config import Settings

if TYPE_CHECKING:
    from celery import Celery

    from tasks.channel import ChannelPublisher
    from workers.chain import ChainMemory
    from workers.heartbeat import Beater


@dataclass
class WorkerContext:
    settings: Settings
    pid: int = field(default_factory=os.getpid)
    chain: ChainMemory = field(init=False)
    beater: Beater | None = None
    results: ChannelPublisher | None = None

    def __post_init__(self) -> None:
        from workers.chain import ChainMemory

        self.chain = ChainMemory()

    def heartbeat(self, app: Celery) -> Beater:
        """This process's heartbeat thread, started on first use (after a fork)."""
        from workers.heartbeat import Beater

        if self.beater is None:
            self.beater = Beater(app, self.settings)
        return self.beater

    def result_publisher(self, app: Celery) -> ChannelPublisher:
        """This process's publisher of result messages, opened on first use."""
        from tasks.channel import ChannelPublisher
        from tasks.messages import results_queue

        if self.results is None:
            self.results = ChannelPublisher(
                app.connection_for_write,
                results_queue(self.settings.queue, self.settings.queue_type),
                # A result is the trial's only record: keep trying through a broker restart.
                max_retries=30,
                interval_start=0.5,
                interval_step=1.0,
                interval_max=5.0,
            )
        return self.results


_CONTEXT: WorkerContext | None = None
_CONFIGURED: Settings | None = None


def configure(settings: Settings) -> WorkerContext:
    """Make ``settings`` this process's worker settings (at start-up, and in tests): the
    array store, the kernel cache's bound and a fresh context (forked pool children build
    their own from the same settings)."""
    from tasks.store.open import configure as configure_store
    from workers.solvers.cache import configure_process_cache

    global _CONTEXT, _CONFIGURED
    _CONFIGURED = settings
    configure_store(settings)
    configure_process_cache(settings.kernel_cache_bytes)
    _CONTEXT = WorkerContext(settings)
    return _CONTEXT


def context() -> WorkerContext:
    """This process's context: built from the configured settings (else the environment),
    again in a forked child."""
    global _CONTEXT
    if _CONTEXT is None or _CONTEXT.pid != os.getpid():
        _CONTEXT = WorkerContext(_CONFIGURED or Settings.from_env())
    return _CONTEXT


def reset() -> None:
    """Forget this process's context (tests)."""
    global _CONTEXT
    _CONTEXT = None


__all__ = ["Any", "WorkerContext", "configure", "context", "reset"]
