"""A scheduler and workers as child processes: the embedded default's cluster.

Same code path as production: the children are the ``banditq scheduler`` and
``banditq worker`` commands, talking over the configured broker and database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from app.config import Settings


class LocalCluster:
    """Context manager: starts on enter, SIGTERMs (then SIGKILLs) on exit. Logs go to
    ``<home>/logs``."""

    def __init__(
        self,
        settings: Settings,
        workers: int = 2,
        scheduler: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.n_workers = workers
        self.with_scheduler = scheduler
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra_env = extra_env or {}
        self.log_dir = settings.home / "logs"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(Path(self.log_dir) / f"{name}.log", "ab")  # noqa: SIM115 - child owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        return self._spawn("scheduler", ["scheduler"])

    def start_worker(self, i: int) -> subprocess.Popen[bytes]:
        return self._spawn(
            f"worker{i}",
            ["worker", "--concurrency", "1", "--name", f"worker{i}@%h", "--loglevel", "WARNING"],
        )

    def __enter__(self) -> LocalCluster:
        if self.with_scheduler:
            self.start_scheduler()
        for i in range(self.n_workers):
            self.start_worker(i + 1)
        return self

    def check(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args!r} exited with {p.returncode}; see {self.log_dir}")

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self, timeout: float = 15.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # the main process shuts its pool down warmly
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
