"""The wire protocol shared by client, scheduler and workers: queue names, and one typed
message per kind of message with one parser each.

Every message is a JSON object with ``v`` (:data:`PROTOCOL`) and, except a trial, a ``type``.
A message that is not usable is a :class:`MessageError` naming the field: a trial message's
is reported by the worker as the trial's failure; a result, heartbeat, announcement or
wake-up's is dead-lettered by the scheduler (:func:`parse_inbound_checked`). Fields that
identify a message are checked against their bounds (tasks.wire_fields); a result's payload
fields are cleaned the way the database columns need them (NUL replaced, non-finite numbers
and out-of-range integers dropped, strings cut to the column's length, JSON bounded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kombu import Exchange, Queue

from models.states import ResultStatus
from tasks import wire_fields as wf
from tasks.fs_transport import register as _register_fs_transport
from tasks.wire_fields import MessageError

__all__ = ["MessageError"]

_register_fs_transport()

RUN_TRIAL_TASK = "banditq.run_trial"
#: The same task acknowledged on receipt, for trials that may outlive the broker's
#: delivery-acknowledgement timeout (their lease and heartbeats stand in for redelivery).
RUN_LONG_TRIAL_TASK = "banditq.run_long_trial"

#: Protocol version carried in every message; a scheduler refuses versions it does not know.
PROTOCOL = 1

#: PostgreSQL channel the scheduler NOTIFYs (payload: the instance id) in the transaction
#: that finishes an instance; clients waiting on instances LISTEN to it.
NOTIFY_CHANNEL = "banditq_done"
#: PostgreSQL channel the scheduler NOTIFYs (payload: the instance id) in the transaction
#: that decides an external (ask/tell) instance; clients waiting in ``ask`` LISTEN to it.
ASK_CHANNEL = "banditq_asked"


def _direct(name: str, queue_type: str = "classic") -> Queue:
    args = {"x-queue-type": "quorum"} if queue_type == "quorum" else None
    return Queue(name, Exchange(name, type="direct"), name, durable=True, queue_arguments=args)


def trials_queue(name: str, queue_type: str = "classic") -> Queue:
    """Scheduler -> workers: Celery task messages, one per trial attempt."""
    return _direct(name, queue_type)


def results_queue(trial_queue: str, queue_type: str = "classic") -> Queue:
    """Workers -> scheduler: one result message per finished attempt (and heartbeats)."""
    return _direct(f"{trial_queue}.results", queue_type)


def events_queue(trial_queue: str, queue_type: str = "classic") -> Queue:
    """Clients -> scheduler: wake-ups after new instances are committed."""
    return _direct(f"{trial_queue}.events", queue_type)


def device_queue_name(trial_queue: str, device_class: str) -> str:
    """Scheduler -> the workers of one device class (``cpu``, ``cuda-9.0``): trials decided
    for that class, with arms it can run and context features of its device."""
    return f"{trial_queue}.dev.{device_class}"


def kind_queue_name(trial_queue: str, kind: str) -> str:
    """Scheduler -> the workers that have a trial kind installed: every worker consumes the
    queues of the kinds it can run, so a trial never reaches a worker that lacks its kind."""
    return f"{trial_queue}.kind.{kind}"


def device_class(profile: dict[str, Any]) -> str:
    """A worker's device class: ``cpu``, or ``cuda-<compute capability>``."""
    if profile.get("type") == "cuda":
        return f"cuda-{float(profile.get('capability', 0.0)):.1f}"
    return "cpu"


#: pool slots one worker may announce
MAX_SLOTS = 4096


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _envelope(type_: str, at: str, **fields: Any) -> dict[str, Any]:
    """A worker-to-scheduler event body: protocol version, type, fields, send time."""
    return {"v": PROTOCOL, "type": type_, **fields, "at": at or now_iso()}


_float = wf.clean_float


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


_str = wf.clean_text


def valid_cost(v: Any) -> bool:
    """A cost the policy can learn from: a finite number >= 0."""
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < math.inf


# --------------------------------------------------------------------- scheduler -> worker
@dataclass(frozen=True)
class TrialMessage:
    """One attempt of a trial (the Celery task's argument)."""

    trial: str
    attempt: int
    campaign: str
    kind: str
    spec: dict[str, Any]
    arm: dict[str, Any]
    limits: dict[str, Any] = field(default_factory=dict)
    #: kind options (model, floor) and per-trial flags (monitor)
    options: dict[str, Any] | None = None
    #: routed to that device class's queue (see device_queue_name)
    device_class: str | None = None
    #: the instance the trial solves: names its solution for chained instances
    instance: int | None = None
    #: the scheduler database's identity: with the instance, names a chained solution
    database: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": PROTOCOL,
            "trial": self.trial,
            "attempt": self.attempt,
            "campaign": self.campaign,
            "kind": self.kind,
            "spec": self.spec,
            "arm": self.arm,
            "limits": self.limits,
        }
        if self.options is not None:
            body["options"] = self.options
        if self.device_class is not None:
            body["device_class"] = self.device_class
        if self.instance is not None:
            body["instance"] = self.instance
        if self.database is not None:
            body["database"] = self.database
        return body

    @classmethod
    def parse(cls, body: Any) -> TrialMessage:
        if not isinstance(body, dict) or body.get("v") != PROTOCOL:
            raise MessageError("payload", f"expected a protocol-{PROTOCOL} trial object")
        for key, typ in (("trial", str), ("kind", str), ("campaign", str)):
            if not isinstance(body.get(key), typ):
                raise MessageError(f"payload.{key}", "must be a string")
        attempt = _int(body.get("attempt"))
        if attempt is None or attempt < 1:
            raise MessageError("payload.attempt", "must be an integer >= 1")
        arm, spec = body.get("arm"), body.get("spec")
        if not isinstance(arm, dict) or not isinstance(spec, dict):
            raise MessageError("payload", "arm and spec must be objects")
        options = body.get("options")
        if options is not None and not isinstance(options, dict):
            raise MessageError("payload.options", "must be an object")
        limits = body.get("limits") or {}
        if not isinstance(limits, dict):
            raise MessageError("payload.limits", "must be an object")
        dc = body.get("device_class")
        database = body.get("database")
        if database is not None:
            database = wf.identity(database, wf.DATABASE_ID_RE, "payload.database")
        return cls(
            body["trial"],
            attempt,
            body["campaign"],
            body["kind"],
            spec,
            arm,
            limits,
            options,
            dc if isinstance(dc, str) else None,
            _int(body.get("instance")),
            database,
        )

    @property
    def max_seconds(self) -> float | None:
        """The campaign's wall-time limit, if it set one."""
        secs = _float(self.limits.get("max_seconds"))
        return secs if secs is not None and secs > 0 else None


# --------------------------------------------------------------------- worker -> scheduler
@dataclass(frozen=True)
class ResultMessage:
    """What a worker reports for one attempt: success with a cost, or failure with an error."""

    trial: str
    attempt: int | None
    status: ResultStatus
    cost: float | None = None
    iterations: int | None = None
    converged: bool | None = None
    residual: float | None = None
    latency_ms: float | None = None
    quality: float | None = None
    device: str | None = None
    worker: str | None = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: a failure for a transient reason (the store or database unreachable): the scheduler
    #: re-issues the trial while attempts are left instead of recording the failure
    retryable: bool = False
    #: the cost is a lower bound: the arm was stopped at its budget or did not converge
    #: (the policy learns it as a censored observation)
    censored: bool = False

    TYPE = "result"

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL,
            "type": self.TYPE,
            "trial": self.trial,
            "attempt": self.attempt,
            "status": self.status.value,
            "cost": self.cost,
            "iterations": self.iterations,
            "converged": self.converged,
            "residual": self.residual,
            "latency_ms": self.latency_ms,
            "quality": self.quality,
            "device": self.device,
            "worker": self.worker,
            "error": self.error,
            "metrics": self.metrics,
            "outputs": self.outputs,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "retryable": self.retryable,
            "censored": self.censored,
        }

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ResultMessage:
        """The trial id and attempt must be valid (else MessageError); a success whose cost
        is not a finite number >= 0 becomes a failure saying so (the policy must never learn
        from it); payload fields are cleaned (see the module docstring)."""
        trial = wf.identity(body.get("trial"), wf.TRIAL_ID_RE, "trial")
        attempt = wf.int32(body.get("attempt"), "attempt", lo=1)
        ok = body.get("status") == ResultStatus.succeeded.value
        cost = body.get("cost")
        error = _str(body.get("error"), 4000)
        if ok and not valid_cost(cost):
            ok, error = False, f"invalid cost {str(cost)[:80]!r} from worker"
        converged = body.get("converged")
        metrics, outputs = body.get("metrics"), body.get("outputs")
        return cls(
            trial=trial,
            attempt=attempt,
            status=ResultStatus.succeeded if ok else ResultStatus.failed,
            cost=float(cost) if ok and cost is not None else None,
            iterations=wf.clean_int(body.get("iterations")),
            converged=converged if isinstance(converged, bool) else None,
            residual=_float(body.get("residual")),
            latency_ms=_float(body.get("latency_ms")),
            quality=_float(body.get("quality")),
            device=_str(body.get("device"), 50),
            worker=_str(body.get("worker"), 200),
            error=error,
            metrics=wf.clean_json(metrics, "metrics") if isinstance(metrics, dict) else {},
            outputs=wf.clean_json(outputs, "outputs") if isinstance(outputs, dict) else None,
            started_at=parse_time(body.get("started_at")),
            finished_at=parse_time(body.get("finished_at")),
            retryable=not ok and body.get("retryable") is True,
            censored=ok and body.get("censored") is True,
        )

    @property
    def ok(self) -> bool:
        return self.status is ResultStatus.succeeded


@dataclass(frozen=True)
class Heartbeat:
    """A worker still runs this attempt: its lease is extended."""

    trial: str
    attempt: int
    worker: str | None = None
    at: str = ""

    TYPE = "heartbeat"

    def to_json(self) -> dict[str, Any]:
        return _envelope(
            self.TYPE, self.at, trial=self.trial, attempt=self.attempt, worker=self.worker
        )

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Heartbeat:
        trial = wf.identity(body.get("trial"), wf.TRIAL_ID_RE, "trial")
        attempt = wf.int32(body.get("attempt"), "attempt", lo=1)
        worker = body.get("worker")
        if worker is not None:
            wf.identity(worker, wf.WORKER_RE, "worker")
        return cls(trial, attempt, worker, _str(body.get("at") or "", 64) or "")


@dataclass(frozen=True)
class WorkerAnnouncement:
    """A worker's device and slots, at start-up and then periodically. ``profile`` is as
    sent: the scheduler's device registry validates it."""

    worker: str
    device_class: str
    profile: Any
    slots: int
    at: str = ""

    TYPE = "worker"

    @classmethod
    def of(cls, worker: str, profile: dict[str, Any], slots: int) -> WorkerAnnouncement:
        return cls(worker, device_class(profile), profile, slots, now_iso())

    def to_json(self) -> dict[str, Any]:
        return _envelope(
            self.TYPE,
            self.at,
            worker=self.worker,
            device_class=self.device_class,
            profile=self.profile,
            slots=self.slots,
        )

    @classmethod
    def parse(cls, body: dict[str, Any]) -> WorkerAnnouncement:
        """Name, device class, profile and slots bounded (a profile's class must be the one
        announced; the registry checks the profile's values)."""
        worker = wf.identity(body.get("worker"), wf.WORKER_RE, "worker")
        slots = wf.int32(body.get("slots", 1), "slots", lo=1)
        if slots > MAX_SLOTS:
            raise MessageError("slots", f"must be at most {MAX_SLOTS}, got {slots}")
        profile = body.get("profile")
        if not isinstance(profile, dict):
            raise MessageError("profile", "must be an object")
        cap = profile.get("capability", 0.0)
        if (
            isinstance(cap, bool)
            or not isinstance(cap, int | float)
            or not 0 <= _float(cap or 0.0) <= 99  # type: ignore[operator]
        ):
            raise MessageError("profile.capability", f"must be a number in 0..99, got {cap!r}")
        dc = wf.identity(body.get("device_class"), wf.DEVICE_CLASS_RE, "device_class")
        if dc != device_class(profile):
            raise MessageError("device_class", f"{dc!r} is not the profile's class")
        return cls(worker, dc, profile, slots, _str(body.get("at") or "", 64) or "")


# --------------------------------------------------------------------- client -> scheduler
@dataclass(frozen=True)
class WakeUp:
    """New instances of ``campaign`` are committed; with ``reload``, its state changed in
    the database (resumed, cancelled, deleted, failed instances retried): the scheduler
    reloads it instead of trusting what it holds."""

    campaign: str
    reload: bool = False

    TYPE = "wake"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"v": PROTOCOL, "type": self.TYPE, "campaign": self.campaign}
        if self.reload:
            body["reload"] = True
        return body

    @classmethod
    def parse(cls, body: dict[str, Any]) -> WakeUp:
        name = wf.identity(body.get("campaign"), wf.CAMPAIGN_RE, "campaign")
        return cls(name, body.get("reload") is True)


Inbound = ResultMessage | Heartbeat | WorkerAnnouncement | WakeUp
_PARSERS: dict[str, Any] = {
    m.TYPE: m.parse for m in (ResultMessage, Heartbeat, WorkerAnnouncement, WakeUp)
}


def parse_inbound_checked(body: Any) -> Inbound:
    """A message the scheduler consumes, typed; MessageError naming what is wrong when it is
    not one (wrong protocol, unknown type, a bad identifying field)."""
    if not isinstance(body, dict):
        raise MessageError("payload", f"expected a JSON object, got {type(body).__name__}")
    if body.get("v") != PROTOCOL:
        raise MessageError("v", f"protocol {str(body.get('v'))[:20]!r} is not {PROTOCOL}")
    type_ = body.get("type")
    parser = _PARSERS.get(type_) if isinstance(type_, str) else None
    if parser is None:
        raise MessageError("type", f"unknown message type {str(type_)[:50]!r}")
    return parser(body)  # type: ignore[no-any-return]


def parse_inbound(body: Any) -> Inbound | None:
    """:func:`parse_inbound_checked`, None instead of the error."""
    try:
        return parse_inbound_checked(body)
    except MessageError:
        return None
