"""Wall-time limits for trials run in threads (``workers.watchdog``)."""

from __future__ import annotations

import threading
import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from app.config import Settings
from tasks.errors import ConfigError
from workers.watchdog import Watchdog


def _spin(seconds: float) -> None:
    """Python code running for ``seconds`` (interruptible between bytecodes)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_soft_limit_interrupts_python_code_and_hard_is_not_reached() -> None:
    hard: list[float] = []
    t0 = time.monotonic()
    dog = Watchdog(0.2, 5.0, lambda: hard.append(time.monotonic()))
    with pytest.raises(SoftTimeLimitExceeded):
        try:
            _spin(3.0)
        finally:
            dog.disarm()
    dog.disarm()
    elapsed = time.monotonic() - t0
    assert 0.2 <= elapsed < 2.0
    time.sleep(0.3)
    assert hard == []


def test_a_disarmed_watchdog_never_fires_later() -> None:
    called: list[int] = []
    dog = Watchdog(0.2, 0.4, lambda: called.append(1))
    _spin(0.05)
    dog.disarm()
    _spin(0.6)  # past both limits: nothing raised here, nothing called
    assert called == []


def test_hard_limit_is_called_when_the_trial_ignores_the_soft_one() -> None:
    called = threading.Event()
    dog = Watchdog(0.1, 0.4, called.set)
    t0 = time.monotonic()
    with pytest.raises(SoftTimeLimitExceeded):
        try:
            time.sleep(0.8)  # a blocking call: the soft exception lands only after it
            _spin(0.1)
        finally:
            dog.disarm()
    assert called.wait(1.0) and time.monotonic() - t0 >= 0.4


def test_no_limits_start_no_thread() -> None:
    dog = Watchdog(None, None, lambda: None)
    assert dog._thread is None
    dog.disarm()


def test_worker_pool_setting_is_checked() -> None:
    assert Settings(worker_pool="threads").worker_pool == "threads"
    with pytest.raises(ConfigError, match="BANDITQ_WORKER_POOL"):
        Settings(worker_pool="solo")
