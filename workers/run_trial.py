"""The one Celery task: run a trial of some kind and publish its result as a JSON message.

Workers never open database sessions: the result goes back over the broker to the scheduler,
which writes it idempotently (keyed by trial and attempt).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.utils.json import dumps

from app.errors import InputError
from models.states import ResultStatus
from tasks import messages
from tasks.channel import ChannelPublisher
from tasks.kinds import get_kind
from tasks.messages import (
    RUN_LONG_TRIAL_TASK,
    RUN_TRIAL_TASK,
    MessageError,
    ResultMessage,
    TrialMessage,
    results_queue,
)
from workers import chain
from workers.watchdog import Watchdog

log = logging.getLogger("banditq.worker")


def execute(
    payload: Any,
    worker: str,
    limits: tuple[float | None, float | None] | None = None,
    on_hard: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run a trial message; always returns a result message (failures are results too).

    ``limits`` (hard, soft seconds) are enforced here by a :class:`Watchdog` (pools that
    do not enforce Celery's time limits: threads); ``on_hard`` is called past the hard one."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    ident = payload if isinstance(payload, dict) else {}
    trial = str(ident["trial"]) if isinstance(ident.get("trial"), str) else ""
    attempt = ident.get("attempt") if isinstance(ident.get("attempt"), int) else None
    instance = ident.get("instance") if isinstance(ident.get("instance"), int) else None
    since = ident.get("chain_since")
    done: dict[str, Any]
    chain.begin(instance, float(since) if isinstance(since, int | float) else None)
    dog: Watchdog | None = None
    try:
        msg = TrialMessage.parse(payload)
        if limits is not None:
            dog = Watchdog(limits[1], limits[0], on_hard or (lambda: None))
        try:
            out = get_kind(msg.kind).run(msg.spec, msg.arm, msg.options or {})
        finally:
            if dog is not None:
                dog.disarm()
        wall_ms = (time.perf_counter() - t0) * 1000.0
        done = {
            "status": ResultStatus.succeeded,
            "cost": out.cost,
            "iterations": out.iterations,
            "converged": out.converged,
            "residual": out.residual,
            "quality": out.quality,
            "device": out.device,
            "metrics": out.metrics,
            "outputs": out.outputs,
            "latency_ms": wall_ms if out.latency_ms is None else out.latency_ms,
        }
    except chain.NotReady:
        raise  # not a result: the trial goes back to the queue (see _run)
    except (InputError, MessageError) as exc:
        done = {"status": ResultStatus.failed, "error": f"invalid input: {exc}"}
    except SoftTimeLimitExceeded:
        if dog is not None:  # its exception may have landed in disarm itself
            dog.disarm()
        limit = (ident.get("limits") or {}).get("max_seconds")
        done = {
            "status": ResultStatus.failed,
            "error": f"timed out: past the {limit} s wall-time limit",
        }
    except Exception as exc:  # a trial's crash is a result, not a lost message
        log.warning("trial %s failed: %s", trial, exc)
        tb = traceback.format_exc(limit=5)
        done = {"status": ResultStatus.failed, "error": f"{type(exc).__name__}: {exc}\n{tb}"[:4000]}
    done.setdefault("latency_ms", (time.perf_counter() - t0) * 1000.0)
    result = ResultMessage(
        trial=trial,
        attempt=attempt,
        worker=worker,
        started_at=started,
        finished_at=datetime.now(UTC),
        **done,
    )
    return result.to_json()


MAX_CRASHES = 3


def _failure(payload: Any, worker: str, error: str) -> dict[str, Any]:
    """A failed result message for ``payload`` without running it (an unknown message
    version makes ``execute`` stop before the trial and keep its identifiers)."""
    message = execute({**payload, "v": -1}, worker)
    message.update(status="failed", error=error)
    return message


def _journal(app: Celery, task: Task, payload: Any) -> Path | None:
    """A per-host file counting starts of this trial attempt: a trial that kills its worker
    process every time would otherwise be redelivered forever (reject_on_worker_lost).

    On AMQP a first delivery cannot follow a crash, and its ``redelivered`` flag says so:
    no file is written for it (the file costs ~0.25 ms per trial, a large share of a short
    one), so counting starts at the first redelivery. kombu's virtual transports (the
    embedded broker) never set that flag: there every start is journalled, except on the
    threads pool, where a trial that kills the process takes its unacknowledged message with
    it (the virtual transport redelivers only from a surviving process): the lease re-issues
    it as a new attempt, bounded by ``max_attempts``, and no later start could read the file."""
    if not isinstance(payload, dict) or not isinstance(payload.get("trial"), str):
        return None
    settings = app.conf["banditq_settings"]
    if settings.embedded_broker and settings.worker_pool == "threads":
        return None
    delivery = task.request.delivery_info or {}
    if not settings.embedded_broker and not delivery.get("redelivered"):
        return None
    return _journal_path(app, payload)


def _journal_path(app: Celery, payload: dict[str, Any]) -> Path:
    folder = app.conf["banditq_settings"].home / "crash-journal"
    folder.mkdir(parents=True, exist_ok=True)
    name = "".join(
        c for c in f"{payload['trial']}-{payload.get('attempt')}" if c.isalnum() or c == "-"
    )
    return folder / name


def register(app: Celery) -> None:
    # max_retries=None: a chained trial whose earlier solution is not there yet goes back to
    # the queue until BANDITQ_CHAIN_WAIT_SECONDS (workers.chain), however many times.
    @app.task(
        name=RUN_TRIAL_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=None,
    )
    def run_trial(self: Task, payload: dict[str, Any]) -> str:
        return _run(app, self, payload)

    # Acknowledged on receipt: RabbitMQ would otherwise close the channel of a trial that
    # outlives its consumer_timeout and redeliver it in a loop (celery #6760). A worker that
    # dies mid-trial stops heartbeating; the lease then re-issues the trial as a new attempt.
    @app.task(name=RUN_LONG_TRIAL_TASK, bind=True, acks_late=False, max_retries=None)
    def run_long_trial(self: Task, payload: dict[str, Any]) -> str:
        return _run(app, self, payload)


def _run(app: Celery, task: Task, payload: dict[str, Any]) -> str:
    """Run one attempt and publish its result; returns the trial's status (the task's
    return value, ignored by the broker, read by the worker's metrics)."""
    worker = task.request.hostname or f"{socket.gethostname()}:{os.getpid()}"
    journal = _journal(app, task, payload)
    # Without a file a journalled start is the first on this host, or (AMQP) the first
    # redelivery: at least one earlier start died.
    first = 1 if journal is None or app.conf["banditq_settings"].embedded_broker else 2
    starts = int(journal.read_text() or 0) + 1 if journal and journal.exists() else first
    if journal is not None and starts > MAX_CRASHES:
        log.error("trial %s killed its worker %d times; failing it", payload["trial"], starts - 1)
        message = _failure(
            payload,
            worker,
            f"worker process died {starts - 1} times running this trial; not retried",
        )
    else:
        if journal is not None:
            journal.write_text(str(starts))
        threads = app.conf["banditq_settings"].worker_pool == "threads"
        limits = _limits(task) if threads else None
        try:
            with Heartbeat(app, payload, worker):
                message = execute(
                    payload, worker, limits, lambda: _past_hard_limit(app, payload, worker)
                )
        except chain.NotReady:
            if journal is not None:  # not a crash: the next start must not count it
                journal.unlink(missing_ok=True)
            since = payload.get("chain_since", chain.since())
            retries = int(task.request.retries or 0)
            raise task.retry(
                args=[{**payload, "chain_since": since}],
                countdown=chain.retry_delay(retries),
            ) from None
    if message.get("status") == ResultStatus.failed:
        chain.note_failure(payload, str(message.get("error")))
    publish_result(app, message)
    if journal is not None:
        journal.unlink(missing_ok=True)
    return str(message.get("status"))


def _limits(task: Task) -> tuple[float | None, float | None] | None:
    """(hard, soft) seconds the trial's message carries, if any."""
    limit = task.request.timelimit
    if not limit or all(v is None for v in limit):
        return None
    hard, soft = limit
    return (
        float(hard) if hard is not None else None,
        float(soft) if soft is not None else None,
    )


def _past_hard_limit(app: Celery, payload: dict[str, Any], worker: str) -> None:
    """Threads pool: a trial still running past its hard limit cannot be stopped. Report it
    failed (its chained waiters too), make a redelivery fail at once, and end the process
    (its supervisor restarts it; the message goes back to the queue and is refused there)."""
    limit = (payload.get("limits") or {}).get("max_seconds")
    error = f"timed out: past the {limit} s wall-time limit and still running; worker restarted"
    try:
        message = _failure(payload, worker, error)
        settings = app.conf["banditq_settings"]
        publisher = ChannelPublisher(
            app.connection_for_write, results_queue(settings.queue, settings.queue_type)
        )
        publisher.publish(dumps(message))
        chain.note_failure(payload, error)
        if isinstance(payload.get("trial"), str):
            _journal_path(app, payload).write_text(str(MAX_CRASHES))
    finally:
        log.error("trial %s: %s", payload.get("trial"), error)
        logging.shutdown()
        os._exit(70)


class Heartbeat:
    """While a trial runs, this process's heartbeat thread tells the scheduler every third of
    the lease that the attempt is alive, so its lease is extended however long the trial
    takes. The thread runs beside the trial code (torch and numpy release the GIL; pure-Python
    loops are preempted), on a connection of its own; entering and leaving only registers the
    attempt, and trials shorter than a third of the lease send nothing."""

    def __init__(self, app: Celery, payload: Any, worker: str) -> None:
        ok = isinstance(payload, dict) and isinstance(payload.get("trial"), str)
        self.key = (payload["trial"], payload.get("attempt")) if ok else None
        self.app = app
        self.worker = worker

    def __enter__(self) -> Heartbeat:
        if self.key is not None:
            _beater(self.app).add(self.key, self.worker)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.key is not None:
            _beater(self.app).remove(self.key)


class _Beater:
    """The per-process heartbeat thread (started lazily in the pool child, after the fork)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.pid = os.getpid()
        self.interval = max(0.5, app.conf["banditq_settings"].lease_seconds / 3.0)
        self.lock = threading.Lock()
        self.running: dict[tuple[str, Any], tuple[str, float]] = {}  # key -> (worker, last)
        threading.Thread(target=self._loop, name="banditq-heartbeat", daemon=True).start()

    def add(self, key: tuple[str, Any], worker: str) -> None:
        with self.lock:
            self.running[key] = (worker, time.monotonic())

    def remove(self, key: tuple[str, Any]) -> None:
        with self.lock:
            self.running.pop(key, None)

    def _loop(self) -> None:
        settings = self.app.conf["banditq_settings"]
        # Its own publisher (not thread-safe, so not the result publisher of this process).
        publisher = ChannelPublisher(
            self.app.connection_for_write, results_queue(settings.queue, settings.queue_type)
        )
        while True:
            time.sleep(min(self.interval / 4, 1.0))
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


_BEATER: _Beater | None = None


def _beater(app: Celery) -> _Beater:
    global _BEATER
    if _BEATER is None or _BEATER.pid != os.getpid():  # a forked child needs its own thread
        _BEATER = _Beater(app)
    return _BEATER


_RESULTS: tuple[int, ChannelPublisher] | None = None


def _results_publisher(app: Celery) -> ChannelPublisher:
    """This process's publisher of result messages (a forked child opens its own)."""
    global _RESULTS
    if _RESULTS is None or _RESULTS[0] != os.getpid():
        settings = app.conf["banditq_settings"]
        publisher = ChannelPublisher(
            app.connection_for_write,
            results_queue(settings.queue, settings.queue_type),
            # A result is the trial's only record: keep trying through a broker restart.
            max_retries=30,
            interval_start=0.5,
            interval_step=1.0,
            interval_max=5.0,
        )
        _RESULTS = (os.getpid(), publisher)
    return _RESULTS[1]


def publish_result(app: Celery, message: dict[str, Any]) -> None:
    # kombu's encoder: kinds may report datetimes, UUIDs or decimals in metrics or outputs.
    _results_publisher(app).publish(dumps(message))
