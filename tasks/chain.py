"""Chained instances: an initial guess or right-hand side built from an earlier instance's
solution, on the worker, so a time-stepping loop needs no client round trip per step.

On the wire a chained value is ``{"solution_of": id, "shape": [n], "scale": s, "times_A": t,
"plus": ref | grid field | None}``: ``s * x + t * (A @ x) + plus`` with ``x`` the solution of
instance ``id`` (of the same campaign, submitted with ``return_solution=True``) and ``A`` the
system's stored matrix as uploaded (before ``alpha * I + beta * A``). The worker that solved ``id``
names its solution ``solution_tag(id)`` in the array store (or the trial's error, when it
failed), which is how a worker that did not solve it finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tasks import gridfield
from tasks.errors import InputError, finite_number
from tasks.gridfield import GridField

KEY = "solution_of"


def solution_tag(instance: int, database: str | None = None) -> str:
    """The store tag naming an instance's solution: by the scheduler database's identity
    and the instance id (an instance id alone repeats after a database is reset)."""
    if database:
        return f"solution-{database}-{int(instance)}"
    return f"solution-{int(instance)}"


def is_chained(value: Any) -> bool:
    return isinstance(value, dict) and KEY in value


class SolutionOf:
    """``scale * x + times_A * (A @ x) + plus``, where ``x`` is the solution of the earlier
    instance ``instance`` (an id ``submit`` returned, in the same campaign, submitted with
    ``return_solution=True``) and ``A`` the stored matrix of the system it is used in.

    Pass it as ``x0=SolutionOf(prev)`` (the previous solution as the initial guess) or as the
    right-hand side of ``LinearSystem.affine``: a Crank-Nicolson step's ``(I - s A) u + f``
    is ``SolutionOf(prev, 1.0, -s, f)``. The worker computes it where the solution is, so the
    steps of a simulation can all be submitted at once and run back to back. ``plus`` (an
    array) is uploaded to the array store at submit time; a :class:`tasks.gridfield.GridField`
    travels as its formula and is evaluated on the worker. ``SolutionOf.item(j, ...)`` names
    item j of the same ``submit_many`` call instead (an earlier item): a whole stretch of
    steps in one call and one transaction."""

    def __init__(
        self, instance: int, scale: float = 1.0, times_A: float = 0.0, plus: Any = None
    ) -> None:
        if isinstance(instance, bool) or not isinstance(instance, int | np.integer):
            raise InputError("solution_of", f"must be an instance id (int), got {instance!r}")
        self.instance: int | None = int(instance)
        self.index: int | None = None
        self.scale = finite_number(scale, "solution_of.scale")
        self.times_A = finite_number(times_A, "solution_of.times_A")
        self.plus: np.ndarray | GridField | None = None
        if isinstance(plus, GridField):
            self.plus = plus
        elif plus is not None:
            self.plus = np.asarray(plus, dtype=np.float64).ravel()
            if not np.all(np.isfinite(self.plus)):
                raise InputError("solution_of.plus", "must be finite (NaN or inf found)")

    @classmethod
    def item(
        cls, index: int, scale: float = 1.0, times_A: float = 0.0, plus: Any = None
    ) -> SolutionOf:
        """The solution of item ``index`` (0-based, an earlier item) of the ``submit_many``
        call this value is passed to."""
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
            raise InputError("solution_of.item", f"must be an item index >= 0, got {index!r}")
        self = cls(0, scale, times_A, plus)
        self.instance, self.index = None, int(index)
        return self

    def to_wire(
        self, n: int, put: Callable[[str, Any], dict[str, Any]], field: str = "x0"
    ) -> dict[str, Any]:
        """The wire form; an item reference (``SolutionOf.item``) carries ``"item": j`` in
        place of the id until :func:`resolve_items` names the instance."""
        plus: dict[str, Any] | None = None
        if isinstance(self.plus, GridField):
            plus = gridfield.validate(self.plus.to_wire(), n, f"{field}.plus")
        elif self.plus is not None:
            if self.plus.size != n:
                raise InputError(f"{field}.plus", f"must have length {n}, got {self.plus.size}")
            plus = put("vector", self.plus)
        ref: dict[str, Any] = {KEY: self.instance} if self.index is None else {"item": self.index}
        return {
            **ref,
            "shape": [n],
            "scale": self.scale,
            "times_A": self.times_A,
            "plus": plus,
        }

    def __repr__(self) -> str:
        of = self.instance if self.index is None else f"item {self.index}"
        return f"SolutionOf({of}, scale={self.scale}, times_A={self.times_A})"


def _chained_slots(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(field, value) of the chained values a solver spec holds (x0, the stored system's b)."""
    out: list[tuple[str, dict[str, Any]]] = []
    x0 = spec.get("x0")
    if isinstance(x0, dict) and (KEY in x0 or "item" in x0):
        out.append(("x0", x0))
    system = spec.get("system")
    stored = system.get("stored") if isinstance(system, dict) else None
    b = stored.get("b") if isinstance(stored, dict) else None
    if isinstance(b, dict) and (KEY in b or "item" in b):
        out.append(("system.b", b))
    return out


def has_items(spec: dict[str, Any]) -> bool:
    """Whether a spec's chained values name items of its submit call (``SolutionOf.item``)."""
    return any("item" in v for _f, v in _chained_slots(spec))


def resolve_items(spec: dict[str, Any], position: int, ids: list[int] | None, where: str) -> None:
    """Name the instances behind ``SolutionOf.item`` references in a spec (in place): item j
    is ``ids[j]``, the ids of the call's items; ``position`` is this spec's own item (only
    earlier items may be named)."""
    for field, value in _chained_slots(spec):
        if "item" not in value:
            continue
        j = value.pop("item")
        if ids is None or position == 0:
            raise InputError(
                f"{where}{field}",
                f"SolutionOf.item({j!r}) must name an earlier item of the same submit_many "
                "call, and there is none before this one",
            )
        if not isinstance(j, int) or not 0 <= j < position:
            raise InputError(
                f"{where}{field}",
                f"SolutionOf.item must name an earlier item of this submit_many call "
                f"(0..{position - 1}), got {j!r}",
            )
        value[KEY] = ids[j]


def validate(value: Any, n: int, field: str, has_matrix: bool) -> dict[str, Any]:
    """A normalized chained value of length ``n`` or ``InputError`` naming the field.
    ``has_matrix``: whether ``times_A`` may be used (a stored matrix is at hand)."""
    from tasks.store.blobs import is_ref

    if not isinstance(value, dict):
        raise InputError(field, "must be an object")
    unknown = sorted(set(value) - {KEY, "shape", "scale", "times_A", "plus"})
    if unknown:
        raise InputError(f"{field}.{unknown[0]}", "unknown key")
    inst = value.get(KEY)
    if isinstance(inst, bool) or not isinstance(inst, int) or inst < 1:
        raise InputError(f"{field}.{KEY}", f"must be an instance id, got {inst!r}")
    if list(value.get("shape") or []) != [n]:
        raise InputError(f"{field}.shape", f"must be [{n}], got {value.get('shape')!r}")
    out: dict[str, Any] = {KEY: inst, "shape": [n]}
    for key, default in (("scale", 1.0), ("times_A", 0.0)):
        out[key] = finite_number(value.get(key, default), f"{field}.{key}")
    if out["times_A"] != 0.0 and not has_matrix:
        raise InputError(f"{field}.times_A", "needs a stored matrix (LinearSystem.affine)")
    plus = value.get("plus")
    if gridfield.is_field(plus):
        plus = gridfield.validate(plus, n, f"{field}.plus")
    elif plus is not None and (
        not is_ref(plus) or plus["kind"] != "vector" or list(plus["shape"]) != [n]
    ):
        raise InputError(
            f"{field}.plus",
            f"must be a reference to a stored vector of length {n}, or a grid field",
        )
    out["plus"] = plus
    return out


def parents(spec: Any) -> list[tuple[str, int, int]]:
    """(field, instance, n) of every chained value in a validated solver spec."""
    if not isinstance(spec, dict):
        return []
    return [
        (field, int(v[KEY]), int(v["shape"][0])) for field, v in _chained_slots(spec) if KEY in v
    ]
