"""The one Celery task's body: run a trial of some kind and publish its result as a JSON
message (the heartbeat, the crash journal and result publishing are their own modules; the
process's state is the worker context).

Workers never open database sessions: the result goes back over the broker to the scheduler,
which writes it idempotently (keyed by trial and attempt).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.utils.json import dumps

from models.states import ResultStatus
from tasks.channel import ChannelPublisher
from tasks.errors import InputError
from tasks.kinds import get_kind
from tasks.messages import (
    RUN_LONG_TRIAL_TASK,
    RUN_TRIAL_TASK,
    MessageError,
    ResultMessage,
    TrialMessage,
    results_queue,
)
from tasks.plugins import PluginError
from workers import chain
from workers.heartbeat import Heartbeat
from workers.journal import MAX_CRASHES, journal_path
from workers.journal import journal as journal_for
from workers.results import publish_result
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
    chain.begin(
        instance,
        float(since) if isinstance(since, int | float) else None,
        database=ident.get("database") if isinstance(ident.get("database"), str) else None,
        campaign=str(ident.get("campaign") or "")[:200],
        attempt=attempt,
    )
    dog: Watchdog | None = None
    try:
        msg = TrialMessage.parse(payload)
        try:
            get_kind(msg.kind)
        except PluginError as exc:
            # Not the trial's fault: this worker lacks the kind (or cannot import it). The
            # scheduler re-issues it for another worker while attempts are left.
            raise KindMissing(f"kind {msg.kind!r} is not usable on worker {worker}: {exc}") from exc
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
            "censored": out.censored,
        }
    except chain.NotReady:
        raise  # not a result: the trial goes back to the queue (see _run)
    except (InputError, MessageError) as exc:
        done = {"status": ResultStatus.failed, "error": f"invalid input: {exc}"}
    except KindMissing as exc:
        done = {"status": ResultStatus.failed, "error": str(exc)[:4000], "retryable": True}
    except TRANSIENT_ERRORS as exc:
        # the store or database went away mid-trial: not the trial's fault, retried
        done = {
            "status": ResultStatus.failed,
            "error": f"transient: {type(exc).__name__}: {exc}"[:4000],
            "retryable": True,
        }
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


class KindMissing(Exception):
    """This worker cannot run the trial's kind (not installed, or failing to import)."""


#: failures that are not the trial's: a store or database connection lost mid-trial
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    ConnectionError,
    TimeoutError,
)


def _failure(payload: Any, worker: str, error: str) -> dict[str, Any]:
    """A failed result message for ``payload`` without running it (an unknown message
    version makes ``execute`` stop before the trial and keep its identifiers)."""
    message = execute({**payload, "v": -1}, worker)
    message.update(status="failed", error=error)
    return message


def register(app: Celery) -> None:
    # max_retries=None: a chained trial whose earlier solution is not there yet goes back to
    # the queue until BANDITQ_CHAIN_WAIT_SECONDS (workers.chain), however many times.
    # shared=False: Celery's default registers a task with every app of the process; the
    # worker has two (tasks, and the announcer's), so each start warned of duplicates.
    @app.task(
        name=RUN_TRIAL_TASK,
        shared=False,
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
    @app.task(name=RUN_LONG_TRIAL_TASK, shared=False, bind=True, acks_late=False, max_retries=None)
    def run_long_trial(self: Task, payload: dict[str, Any]) -> str:
        return _run(app, self, payload)


def _run(app: Celery, task: Task, payload: dict[str, Any]) -> str:
    """Run one attempt and publish its result; returns the trial's status (the task's
    return value, ignored by the broker, read by the worker's metrics)."""
    worker = task.request.hostname or f"{socket.gethostname()}:{os.getpid()}"
    journal = journal_for(app, task, payload)
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
    if message.get("status") == ResultStatus.failed and not message.get("retryable"):
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
            journal_path(app, payload).write_text(str(MAX_CRASHES))
    finally:
        log.error("trial %s: %s", payload.get("trial"), error)
        logging.shutdown()
        os._exit(70)
