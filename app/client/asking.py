"""Ask/tell: decisions for callers that run their own solves (campaigns of kind ``external``).

``ask`` inserts the instance, wakes the scheduler and waits until it has decided (the
decision, its propensity and policy version logged as for any trial); ``tell`` marks the
trial told in one conditional statement (a second tell, or one after the campaign's
``tell_timeout``, changes nothing and is refused saying why) and publishes the result to
the scheduler as a worker would. The tell is also kept on the trial row, so that a lost
message is recorded by the scheduler's sweep. Not thread-safe, like the client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.client.asked import AskWaiter
from app.client.submitting import Submission
from app.contexts import validate_context
from models.states import ResultStatus
from tasks.errors import InputError, finite_number
from tasks.messages import ResultMessage

log = logging.getLogger("banditq.client")

#: seconds ``ask`` waits for the scheduler's decision unless told otherwise
ASK_TIMEOUT = 30.0


@dataclass(frozen=True)
class Decision:
    """One decision for an external caller: ``arm`` (the arm's parameters), ``id`` (what
    ``tell`` names), the ``propensity`` the policy gave it, why it was chosen, and
    ``budget``: the cost after which the caller should stop and solve with
    ``fallback_arm`` (None without ``policy_config.fallback``)."""

    id: str
    arm: dict[str, Any]
    arm_index: int
    propensity: float
    reason: str
    policy_version: str
    attempt: int
    instance_id: int
    context: dict[str, float] = field(default_factory=dict)
    budget: float | None = None
    fallback_arm: dict[str, Any] | None = None
    decided_at: datetime | None = None


class Trial:
    """What ``with camp.trial(context) as t`` gives: the decision's arm, budget and fallback,
    and :meth:`tell`."""

    def __init__(self, campaign: Asking, decision: Decision) -> None:
        self.campaign = campaign
        self.decision = decision
        self.told = False

    @property
    def arm(self) -> dict[str, Any]:
        return self.decision.arm

    @property
    def budget(self) -> float | None:
        return self.decision.budget

    @property
    def fallback_arm(self) -> dict[str, Any] | None:
        return self.decision.fallback_arm

    def tell(self, cost: float | None = None, **outcome: Any) -> None:
        self.campaign.tell(self.decision, cost, **outcome)
        self.told = True


class Asking(Submission):
    """The ask/tell half of a campaign handle."""

    def _external_meta(self) -> tuple[list[str], str, dict[int, dict[str, Any]], Any]:
        """(features, cost source, arms by index, fallback arm index or None), read once."""
        cached = getattr(self, "_ask_meta", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        from app.client import store

        with self.client.Session() as s:
            row = self._meta(s)
            arms = dict(enumerate(store.arm_values(s, self.id)))
        from tasks.kinds import get_kind

        if not getattr(get_kind(row.kind), "external", False):
            raise InputError(
                "campaign",
                f"{self.name!r} is a {row.kind!r} campaign: ask/tell needs kind='external' "
                "(its workers run the others)",
            )
        options = (row.settings or {}).get("kind_options") or {}
        fb = (row.policy_config or {}).get("fallback")
        meta = (
            list(row.context_features),
            str(options.get("cost", "cost")),
            arms,
            fb.get("arm") if isinstance(fb, Mapping) else None,
        )
        self._ask_meta = meta
        return meta

    def _waiter(self) -> AskWaiter:
        waiter = getattr(self.client, "_asked", None)
        if waiter is None:
            waiter = self.client._asked = AskWaiter(self.client.engine)
        return waiter

    # ------------------------------------------------------------------ ask
    def ask(
        self, context: Mapping[str, Any] | None = None, timeout: float = ASK_TIMEOUT
    ) -> Decision:
        """The scheduler's decision for one instance with ``context`` (blocks until it is
        decided: at most ``timeout`` seconds, then TimeoutError)."""
        return self.ask_many([context or {}], timeout)[0]

    def ask_many(
        self, contexts: Sequence[Mapping[str, Any]], timeout: float = ASK_TIMEOUT
    ) -> list[Decision]:
        """Decisions for many instances in one round trip (inserted together, decided in
        one scheduler step), in the order of ``contexts``."""
        features, _cost, arms, fallback = self._external_meta()
        if isinstance(contexts, Mapping) or not isinstance(contexts, Sequence):
            raise InputError("contexts", "must be a list of context mappings")
        prepared: list[tuple[dict[str, Any], dict[str, Any]]] = [
            (validate_context(dict(c), features, f"contexts[{i}]" if i else "context"), {})
            for i, c in enumerate(contexts)
        ]
        if not prepared:
            return []
        waiter = self._waiter()
        try:
            if waiter.pg:
                got = waiter.insert(self.id, [c for c, _sp in prepared])
                if got is None:
                    raise self._not_active()
                ids = got
            else:
                with self.client.Session() as s, s.begin():
                    ids = self._insert(s, prepared)
            self.client._wake(self.name)
            rows = waiter.wait(ids, timeout)
        finally:
            waiter.release()
        if rows is None:
            raise TimeoutError(
                f"campaign {self.name!r}: no decision within {timeout:g} s; is the scheduler "
                "running (`banditq scheduler`), and the campaign below its max_in_flight?"
            )
        out = []
        for iid, (ctx, _sp) in zip(ids, prepared, strict=True):
            uuid, arm_index, p, reason, version, attempt, budget, at = rows[iid]
            out.append(
                Decision(
                    id=uuid,
                    arm=arms[arm_index],
                    arm_index=arm_index,
                    propensity=p,
                    reason=reason,
                    policy_version=version,
                    attempt=attempt,
                    instance_id=iid,
                    context=ctx,
                    budget=budget,
                    fallback_arm=None if fallback is None else arms.get(fallback),
                    decided_at=at,
                )
            )
        return out

    @contextlib.contextmanager
    def trial(
        self, context: Mapping[str, Any] | None = None, timeout: float = ASK_TIMEOUT
    ) -> Iterator[Trial]:
        """``ask`` for a ``with`` block: ``t.arm``, ``t.budget``, ``t.fallback_arm`` and
        ``t.tell(...)`` inside; an exception is told as a failure with its text and
        re-raised; a block that ends without a tell is told as a failure and refused."""
        t = Trial(self, self.ask(context, timeout))
        try:
            yield t
        except BaseException as exc:
            if not t.told:
                self.tell_failure(t.decision, f"{type(exc).__name__}: {exc}")
            raise
        if not t.told:
            self.tell_failure(t.decision, "the with-block ended without t.tell(...)")
            raise InputError(
                "trial", "the with-block ended without t.tell(...); recorded as a failure"
            )

    # ------------------------------------------------------------------ tell
    def tell(
        self,
        decision: Decision | str,
        cost: float | None = None,
        *,
        iterations: int | None = None,
        latency_ms: float | None = None,
        converged: bool | None = None,
        residual: float | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        """Report how the decision's solve went. ``cost`` (>= 0; seconds, iterations, any
        unit as long as it is the same throughout) unless the campaign takes its cost from
        ``latency_ms`` or ``iterations``. A cost over the decision's budget, or
        ``converged=False``, is a lower bound: the policy learns it as censored. Refused
        (InputError naming ``decision``) when already told or abandoned."""
        trial, attempt, budget, decided_at = self._identity(decision)
        _features, source, _arms, _fb = self._external_meta()
        given = {"cost": cost, "latency_ms": latency_ms, "iterations": iterations}
        value = given[source]
        if value is None:
            raise InputError(source, f"required: campaign {self.name!r} takes its cost from it")
        if finite_number(value, source) < 0:
            raise InputError(source, f"must be a finite number >= 0, got {value!r}")
        for name, v in (("latency_ms", latency_ms), ("residual", residual)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise InputError(name, f"must be a number, got {v!r}")
        if iterations is not None and (
            isinstance(iterations, bool) or not isinstance(iterations, int)
        ):
            raise InputError("iterations", f"must be an integer, got {iterations!r}")
        if converged is not None and not isinstance(converged, bool):
            raise InputError("converged", f"must be True or False, got {converged!r}")
        if metrics is not None and not isinstance(metrics, Mapping):
            raise InputError("metrics", f"must be a mapping, got {type(metrics).__name__}")
        censored = converged is False or (budget is not None and float(value) >= budget)
        m = ResultMessage(
            trial=trial,
            attempt=attempt,
            status=ResultStatus.succeeded,
            cost=float(value),
            iterations=iterations,
            converged=converged,
            residual=None if residual is None else float(residual),
            latency_ms=None if latency_ms is None else float(latency_ms),
            worker=_caller(),
            metrics=dict(metrics or {}),
            started_at=decided_at,
            finished_at=datetime.now(UTC),
            censored=censored,
        )
        self._send(m)

    def tell_failure(self, decision: Decision | str, error: str) -> None:
        """The decision's solve failed (``error`` says how): recorded as failed, no cost to
        the policy. Refused as ``tell`` is."""
        trial, attempt, _budget, decided_at = self._identity(decision)
        m = ResultMessage(
            trial=trial,
            attempt=attempt,
            status=ResultStatus.failed,
            worker=_caller(),
            error=str(error)[:4000],
            started_at=decided_at,
            finished_at=datetime.now(UTC),
        )
        self._send(m)

    def _identity(self, decision: Decision | str) -> tuple[str, int, float | None, datetime | None]:
        """(trial id, attempt, budget, decided at) of a Decision, or of its id alone (an
        external trial has one attempt; its budget and time are then unknown here)."""
        if isinstance(decision, Decision):
            return decision.id, decision.attempt, decision.budget, decision.decided_at
        if isinstance(decision, str) and decision:
            return decision, 1, None, None
        raise InputError("decision", f"must be a Decision from ask (or its id), got {decision!r}")

    def _send(self, m: ResultMessage) -> None:
        """Mark the trial told (refused when it is not open), then publish the result."""
        body = json.dumps(m.to_json())
        self._waiter().mark_told(m.trial, self.id, body, self.name)
        self.client._tell(body)


def _caller() -> str:
    """The caller's name in results (as a worker's): ``client:<host>:<pid>``."""
    return f"client:{socket.gethostname()}:{os.getpid()}"[:200]
