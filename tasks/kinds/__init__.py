"""Registry of trial kinds by name."""

from __future__ import annotations

from app.errors import InputError
from tasks.kinds.base import Outcome, TrialKind
from tasks.kinds.inference import InferenceKind
from tasks.kinds.sor import SorKind
from tasks.kinds.ssor_pcg import SsorPcgKind
from tasks.kinds.synthetic import NoopKind, SleepKind
from tasks.kinds.table import TableKind

KINDS: dict[str, TrialKind] = {
    k.name: k
    for k in (SorKind(), SsorPcgKind(), NoopKind(), SleepKind(), InferenceKind(), TableKind())
}


def get_kind(name: str) -> TrialKind:
    kind = KINDS.get(name)
    if kind is None:
        raise InputError(
            "kind", f"unknown trial kind {name!r}; allowed: {', '.join(sorted(KINDS))}"
        )
    return kind


__all__ = ["KINDS", "Outcome", "TrialKind", "get_kind"]
