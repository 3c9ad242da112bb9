"""What a solve returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from app.client.session import Client


@dataclass
class Solution:
    """What :meth:`Campaign.solve` returns: the trial's stats and the solution, stored by the
    worker in the array store and loaded on first use of ``x`` (``x_ref`` is its reference:
    pass it as the next solve's ``x0`` and nothing travels through the client)."""

    x_ref: dict[str, Any] | None
    iterations: int | None
    converged: bool | None
    residual: float | None
    latency_ms: float | None
    arm: dict[str, Any]
    trial_id: int
    status: str
    client: Client | None = None
    _x: np.ndarray | None = None

    @property
    def x(self) -> np.ndarray:
        if self._x is None:
            if self.x_ref is None or self.client is None:
                raise LookupError(f"trial {self.trial_id} returned no solution")
            from tasks.store.blobs import decode

            self._x = np.asarray(decode("vector", self.client.store.get(self.x_ref["sha256"])))
        return self._x
