"""banditq: online, per-instance tuning of numerical solvers and inference acceleration."""

from __future__ import annotations

from typing import Any

__all__ = ["Campaign", "Client", "LinearSystem", "Solution"]


def __getattr__(name: str) -> Any:
    # Lazy so that workers importing app.* do not pay for the client's imports.
    if name in ("Client", "Campaign", "Solution"):
        from app import client

        return getattr(client, name)
    if name == "LinearSystem":
        from app.linsys import LinearSystem

        return LinearSystem
    raise AttributeError(name)
