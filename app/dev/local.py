"""A scheduler and workers as child processes: the embedded default's cluster.

Same code path as production: the children are the ``banditq scheduler`` and
``banditq worker`` commands, talking over the configured broker and database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from app.config import Settings

#: set by LocalCluster in its children: the pid whose death should end them
PARENT_ENV = "BANDITQ_DEV_PARENT"


def exit_with_parent() -> None:
    """In a process a :class:`LocalCluster` started: SIGTERM this process (a graceful stop)
    once the process that started it is gone, killed before the cluster's exit could run, so
    no orphaned scheduler or worker keeps polling. Called by ``banditq scheduler`` and
    ``banditq worker`` before they start; the variable is removed so that processes they fork
    do not check it."""
    raw = os.environ.pop(PARENT_ENV, "")
    if not raw.isdigit():
        return
    parent = int(raw)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="banditq-parent-watch", daemon=True).start()


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
        self.started = datetime.now(UTC)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env.update(self.extra_env)
        env[PARENT_ENV] = str(os.getpid())
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
        self.started = datetime.now(UTC)
        if self.with_scheduler:
            self.start_scheduler()
        for i in range(self.n_workers):
            self.start_worker(i + 1)
        return self

    def wait_ready(
        self,
        timeout: float = 120.0,
        workers: list[int] | None = None,
        since: datetime | None = None,
    ) -> None:
        """Block until every worker started here (or those numbered ``workers``) has
        announced itself to the database (booted, queues bound) since the cluster started
        (or ``since``: a restarted worker's earlier announcements do not count), so that
        timings taken afterwards do not include start-up. ``TimeoutError`` (naming the log
        folder) if they do not within ``timeout`` s."""
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError

        from app.db import make_engine
        from models import WorkerRow

        engine = make_engine(self.settings.database_url)
        numbers = workers if workers is not None else range(1, self.n_workers + 1)
        names = [f"worker{i}@" for i in numbers]
        after = since or self.started
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.check()
                query = select(WorkerRow.name).where(WorkerRow.last_seen >= after)
                try:
                    with engine.connect() as c:
                        seen = list(c.scalars(query))
                except DBAPIError:  # the scheduler has not created the tables yet (SQLite)
                    seen = []
                if all(any(s.startswith(n) for s in seen) for n in names):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers not ready after {timeout:g} s; see {self.log_dir}")
                time.sleep(0.1)
        finally:
            engine.dispose()

    def kill_worker(
        self, i: int, proc: subprocess.Popen[bytes], timeout: float = 120.0
    ) -> subprocess.Popen[bytes]:
        """SIGKILL worker ``i`` (``proc``: its daemon and pool, mid-trial if it runs one),
        start it again and return the new process once it has announced itself."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.procs.remove(proc)
        since = datetime.now(UTC)
        new = self.start_worker(i)
        self.wait_ready(timeout, workers=[i], since=since)
        return new

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
