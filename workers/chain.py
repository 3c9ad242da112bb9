"""Worker side of chained instances (``tasks.chain``): each solution this process stores is
remembered under its instance (in memory, the last few) and named in the array store by a
tag; a chained value is resolved from memory when this process solved the earlier instance,
else from the tag. When there is no tag yet the trial raises :class:`NotReady` and goes back
to the queue (never blocking a worker slot its earlier instance may need), until
``BANDITQ_CHAIN_WAIT_SECONDS`` after it first found the solution missing.

State is per process (a forked pool child starts empty: :class:`ChainMemory`, held by the
worker context) and per trial (one trial at a time per process, as the prefork pool runs
them).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from tasks.chain import KEY, solution_tag
from tasks.errors import InputError

KEEP = 4


class ChainMemory:
    """The current trial's chain identity and the last :data:`KEEP` solutions this process
    produced, by (database, instance): a chain's next step usually runs here."""

    def __init__(self) -> None:
        self.recent: OrderedDict[tuple[str | None, int], np.ndarray] = OrderedDict()
        self.state: dict[str, Any] = {"instance": None, "since": 0.0, "database": None}


def _memory() -> ChainMemory:
    from workers.context import context

    return context().chain


def begin(
    instance: int | None,
    since: float | None = None,
    *,
    database: str | None = None,
    campaign: str = "",
    attempt: int | None = None,
) -> None:
    """A trial of ``instance`` starts in this process; ``since``: when it first found an
    earlier solution missing (epoch seconds; it gives up ``BANDITQ_CHAIN_WAIT_SECONDS``
    after that); ``database``: the scheduler database's identity (tags are named by it);
    ``campaign`` and ``attempt`` are written into the tag's value."""
    _memory().state.update(
        instance=instance,
        since=time.time() if since is None else since,
        database=database,
        campaign=campaign,
        attempt=attempt,
    )


def _tag(instance: int) -> str:
    return solution_tag(instance, _memory().state.get("database"))


def since() -> float:
    return float(_memory().state["since"])


def retry_delay(retries: int) -> float:
    """Seconds before a not-ready chained trial runs again: at once the first time (its
    earlier instance may be right behind it in the queue), then backing off to 0.5 s."""
    return 0.0 if retries == 0 else min(0.002 * 1.5**retries, 0.5)


def remember(x: np.ndarray, ref: dict[str, Any]) -> None:
    """The current trial's solution ``x``, stored as ``ref``: kept here and tagged."""
    mem = _memory()
    instance = mem.state["instance"]
    if instance is None:
        return
    from tasks.store.open import current

    key = (mem.state.get("database"), instance)
    mem.recent[key] = x
    mem.recent.move_to_end(key)
    while len(mem.recent) > KEEP:
        mem.recent.popitem(last=False)
    value = {**ref, "campaign": mem.state.get("campaign"), "attempt": mem.state.get("attempt")}
    current()[0].set_tag(_tag(instance), value)


def note_failure(payload: Any, error: str) -> None:
    """The trial of ``payload`` failed: when it was to return its solution, chained instances
    waiting on that solution fail at once."""
    if not isinstance(payload, dict) or not (payload.get("spec") or {}).get("return_solution"):
        return
    instance = payload.get("instance")
    if not isinstance(instance, int):
        return
    from tasks.store.open import current

    database = payload.get("database") if isinstance(payload.get("database"), str) else None
    value = {
        "error": error[:500],
        "campaign": str(payload.get("campaign") or "")[:200],
        "attempt": payload.get("attempt"),
    }
    try:
        # never over a solution: a stale attempt's failure must not hide a good result
        current()[0].set_error_tag(solution_tag(instance, database), value)
    except Exception:  # the waiters then time out instead: nothing is lost
        return


class NotReady(Exception):
    """The earlier solution a chained trial needs is not there yet: the trial goes back to
    the queue (its earlier instance may be queued behind it, on this very worker)."""

    def __init__(self, instance: int) -> None:
        super().__init__(f"waiting for the solution of instance {instance}")
        self.instance = instance


def _solution(instance: int, n: int, field: str) -> np.ndarray:
    mem = _memory()
    x = mem.recent.get((mem.state.get("database"), instance))
    if x is not None and x.size == n:
        return x
    from tasks.store.open import current, current_settings, fetch

    tag = current()[0].get_tag(_tag(instance))
    if tag is None:
        limit = float(current_settings().chain_wait_seconds)
        if time.time() - float(mem.state["since"]) > limit:
            raise InputError(
                field,
                f"no solution of instance {instance} after {limit:g} s "
                "(BANDITQ_CHAIN_WAIT_SECONDS): was it submitted with return_solution=True, "
                "and is a worker running its trial?",
            )
        raise NotReady(instance)
    if "error" in tag:
        first = str(tag["error"]).splitlines()[0][:300] if tag["error"] else "no detail"
        raise InputError(
            field, f"the solution of instance {instance} is unavailable: its trial failed ({first})"
        )
    out = np.asarray(fetch(tag), dtype=np.float64)
    if out.size != n:
        raise InputError(field, f"instance {instance}'s solution has {out.size} entries, not {n}")
    return out


def resolve(value: dict[str, Any], matrix: Callable[[], Any] | None, field: str) -> np.ndarray:
    """``scale * x + times_A * (A @ x) + plus`` of a validated chained value; ``matrix()``
    gives A (as uploaded) when ``times_A`` is used. Always a new array."""
    from tasks.linsys import vector

    n = int(value["shape"][0])
    x = _solution(int(value[KEY]), n, field)
    out = x * float(value.get("scale", 1.0))
    t = float(value.get("times_A", 0.0))
    if t:
        if matrix is None:
            raise InputError(f"{field}.times_A", "needs a stored matrix")
        out += t * (matrix() @ x)
    if value.get("plus") is not None:
        out += vector(value["plus"])
    return out
