"""The trial-kind interface: validate what the client submits, run it on a worker."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Outcome:
    """What one run produced. ``cost`` is what the policy minimizes (>= 0, finite)."""

    cost: float
    iterations: int | None = None
    converged: bool | None = None
    residual: float | None = None
    quality: float | None = None
    #: the trial's own latency when it differs from the task's wall time (warm timings)
    latency_ms: float | None = None
    device: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None


class TrialKind(ABC):
    """One kind of trial. Stateless and thread-safe; ``run`` may cache per process."""

    name: ClassVar[str]

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:  # noqa: B027 - optional hook
        """Raise ``InputError`` naming ``arms[i].key`` when an arm is unusable."""

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Validate and remove this kind's options from a new campaign's ``settings``
        (``InputError`` naming ``settings.key``); they reach ``run`` as ``options``.
        Default: the kind takes none."""
        return {}

    @abstractmethod
    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Normalize an instance spec or raise ``InputError`` naming the field."""

    @abstractmethod
    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        """Execute on this worker (device chosen here, at run time). ``options`` are the
        campaign's kind options plus per-decision flags (``monitor``)."""
