"""The policy interface: choose an arm for a context, learn from the cost it produced.

Contract shared by every policy:

* Not thread-safe: one scheduler owns a policy object and calls it from one thread.
* ``choose`` does not change the state. Its randomness comes only from ``key`` (the instance's
  sequence number) and the policy seed, so a restored policy makes the same choices.
* ``update`` costs time independent of the number of past updates (or bounded by a constant).
* ``get_state``/``set_state`` round-trip the whole learnt state through JSON-able values.
* Costs are minimized; they must be finite and >= 0 (the scheduler validates them).
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

#: Decision reason of a trial chosen to measure output quality: the scheduler asks the worker
#: to monitor it (run the reference too), whatever the campaign's monitor fraction.
PROBE = "quality-probe"


@dataclass(frozen=True)
class Decision:
    """The chosen arm, the probability the policy gave it, and why it was chosen; ``budget``:
    the cost after which the caller should stop the arm and solve with the fallback arm
    (set by :class:`app.policies.fallback.FallbackBudget`; None: no budget), in the
    campaign's cost unit, or with ``budget_unit="matvec"`` in products of the instance's
    matrix with a vector (timed where the trial runs: set before any cost is known)."""

    arm: int
    propensity: float
    reason: str = "policy"
    budget: float | None = None
    budget_unit: str | None = None


class Policy(ABC):
    """Base class; subclasses list their learnt attributes in ``state_fields``."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    #: attributes (numpy arrays or JSON scalars) that make up the learnt state
    state_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        *,
        arms: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        if n_arms < 1:
            raise ValueError("a policy needs at least one arm")
        self.n_arms = int(n_arms)
        self.n_features = int(n_features)
        # Arm positions (K x p): ordered points of a continuum for policies that exploit it.
        # Without positions (arms that are not numbers) the index stands in; it carries no
        # order (``arms_given`` says which).
        self.arms_given = arms is not None
        pos = np.arange(n_arms, dtype=float)[:, None] if arms is None else np.asarray(arms, float)
        self.arm_positions = pos.reshape(n_arms, -1)
        self.seed = int(seed)
        self.n_updates = 0

    def rng(self, key: int) -> np.random.Generator:
        """A generator that depends only on (seed, key): choices are reproducible."""
        # default_rng's stream, built without its argument dispatch (half its cost, which
        # a burst of decisions pays once per key)
        return np.random.Generator(
            np.random.PCG64([self.seed & 0xFFFFFFFF, int(key) & 0xFFFFFFFF, 7])
        )

    @abstractmethod
    def choose(self, context: np.ndarray, key: int) -> Decision:
        """Pick an arm for ``context`` (1-D float array of length ``n_features``)."""

    def choose_many(self, contexts: np.ndarray, keys: Sequence[int]) -> list[Decision]:
        """``choose`` for each row of ``contexts`` (n x n_features) with its key: the same
        decisions as one call each (the scheduler decides a burst at once). Pure.

        Default: one ``choose`` per row; policies whose choice vectorizes override it."""
        return [self.choose(x, int(k)) for x, k in zip(contexts, keys, strict=True)]

    @abstractmethod
    def _update(self, context: np.ndarray, arm: int, cost: float) -> None: ...

    def update(
        self, context: np.ndarray, arm: int, cost: float, quality: float | None = None
    ) -> None:
        """Learn that ``arm`` cost ``cost`` on ``context`` (and, when the trial was monitored,
        produced output of ``quality``)."""
        x = np.asarray(context, dtype=float)
        self._update(x, int(arm), float(cost))
        if quality is not None:
            self._observe_quality(x, int(arm), float(quality))
        self.n_updates += 1

    def update_censored(
        self, context: np.ndarray, arm: int, bound: float, quality: float | None = None
    ) -> None:
        """Learn that ``arm`` cost at least ``bound`` on ``context`` (it was stopped at its
        budget, or did not converge: a censored observation). Default: the bound as the cost,
        an under-estimate; policies with a cost model impute what it says lies beyond."""
        self.update(context, arm, bound, quality)

    def _observe_quality(self, context: np.ndarray, arm: int, quality: float) -> None:
        """Policies with a quality constraint learn it here; the others ignore quality."""
        return None

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"n_updates": self.n_updates}
        for name in self.state_fields:
            state[name] = _encode(getattr(self, name))
        extra = self._extra_state()
        if extra:
            state["extra"] = _encode(extra)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self.n_updates = int(state.get("n_updates", 0))
        for name in self.state_fields:
            if name in state:
                setattr(self, name, _decode(state[name]))
        if "extra" in state:
            self._load_extra_state(_decode(state["extra"]))

    def _extra_state(self) -> dict[str, Any]:
        """State of helper objects (models); subclasses override with ``_load_extra_state``."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    def choose_among(self, context: np.ndarray, key: int, allowed: np.ndarray) -> Decision:
        """``choose`` restricted to the arms where ``allowed`` is true (those a worker's device
        can run), with the propensity of the restricted distribution. Pure, like ``choose``.

        Default: the policy's own choice when it is allowed and deterministic, else a draw
        from :meth:`probabilities` renormalized over the allowed arms (uniform over them if
        the policy gives them no mass). Policies with a cheaper exact form override it."""
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.all():
            return self.choose(context, key)
        if not allowed.any():
            raise ValueError("no arm is allowed")
        d = self.choose(context, key)
        if allowed[d.arm] and d.propensity >= 1.0:
            return d
        p = self.probabilities(context, key) * allowed
        p = p / p.sum() if p.sum() > 0 else allowed / allowed.sum()
        arm = int(self.rng(key ^ 0x5EED).choice(self.n_arms, p=p))
        return Decision(arm, float(p[arm]), d.reason if arm == d.arm else "policy")

    def best_arm(self, context: np.ndarray) -> int:
        """The arm the policy currently believes cheapest at ``context`` (for reports). Pure.

        Default: the most probable arm of :meth:`probabilities` (a few draws); policies with a
        cost model override it with the model's argmin."""
        return int(np.argmax(self.probabilities(np.asarray(context, float), 0, draws=16)))

    def set_stop_rule(self, fallback: int, factor: float) -> None:
        """Told by :class:`app.policies.fallback.FallbackBudget`: a trial of any other arm is
        stopped at ``factor`` x ``fallback``'s estimated cost and the fallback then solves.
        Default: ignored; policies that weigh what trying an arm costs use it."""
        return None

    def estimated_cost(self, context: np.ndarray, arm: int) -> float | None:
        """The policy's own model's estimate of ``arm``'s cost at ``context``, or None where
        it has none (the default). Pure. Policies that model cost across arms and contexts
        override it: their estimate of an arm rarely played draws on every result."""
        return None

    def probabilities(self, context: np.ndarray, key: int, draws: int = 64) -> np.ndarray:
        """The action distribution at ``context`` (for off-policy evaluation).

        Default: one-hot for a deterministic choice, else a Monte Carlo estimate over
        ``draws`` derived keys. Policies with a closed form override it."""
        d = self.choose(context, key)
        p = np.zeros(self.n_arms)
        if d.propensity >= 1.0:
            p[d.arm] = 1.0
            return p
        for j in range(draws):
            p[self.choose(context, (key * 1_000_003 + j + 1) & 0x7FFFFFFF).arm] += 1.0
        return p / draws


_NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _encode(value: Any) -> Any:
    """JSON-able and exact. NaN and +-Infinity are not JSON (PostgreSQL's JSONB refuses
    them), so non-finite floats are tagged and arrays holding them travel as raw bytes."""
    if isinstance(value, np.ndarray):
        finite = value.dtype.kind not in "fc" or bool(np.isfinite(value).all())
        if value.size > 64 or not finite:  # exact; ~3x smaller than JSON numbers
            raw = np.ascontiguousarray(value).tobytes()
            return {
                "__b64__": base64.b64encode(raw).decode("ascii"),
                "dtype": str(value.dtype),
                "shape": list(value.shape),
            }
        return {"__nd__": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return _encode(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__float__" in value:
        return _NONFINITE[value["__float__"]]
    if isinstance(value, dict) and "__b64__" in value:
        buf = base64.b64decode(value["__b64__"])
        return np.frombuffer(buf, dtype=value["dtype"]).reshape(value["shape"]).copy()
    if isinstance(value, dict) and "__nd__" in value:
        return np.asarray(value["__nd__"], dtype=value["dtype"]).reshape(value["shape"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value


def softmin_argmin(values: np.ndarray) -> int:
    """Lowest value, ties to the lowest index (deterministic)."""
    return int(np.flatnonzero(values == values.min())[0])


def arm_positions(values: list[dict[str, Any]]) -> np.ndarray | None:
    """K x p numeric positions when every arm is numeric in the same keys (e.g. omega)."""
    if not values:
        return None
    keys = sorted(values[0])
    rows = []
    for v in values:
        if sorted(v) != keys:
            return None
        row = []
        for k in keys:
            x = v[k]
            if isinstance(x, bool) or not isinstance(x, int | float):
                return None
            row.append(float(x))
        rows.append(row)
    return np.asarray(rows, dtype=float)
