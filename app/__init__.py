"""banditq: online, per-instance tuning of numerical solvers and inference acceleration.

The public contract: the client (:class:`Client`, :class:`Campaign`, :class:`LinearSystem`,
:class:`Solution`) and what a plugin implements (:class:`TrialKind` returning an
:class:`Outcome`; :class:`Policy` returning a :class:`Decision`), with :class:`InputError` for
bad input. Imports are lazy, so ``import app`` costs nothing and no process loads what it
does not use (a client never imports torch).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Campaign",
    "Client",
    "Decision",
    "InputError",
    "GridField",
    "LinearSystem",
    "SolutionOf",
    "Outcome",
    "Policy",
    "Solution",
    "TrialKind",
]

_WHERE = {
    "Client": "app.client",
    "Campaign": "app.client",
    "Solution": "app.client",
    "LinearSystem": "tasks.linsys",
    "SolutionOf": "tasks.chain",
    "GridField": "tasks.gridfield",
    "TrialKind": "tasks.kinds.base",
    "Outcome": "tasks.kinds.base",
    "Policy": "app.policies.base",
    "Decision": "app.policies.base",
    "InputError": "tasks.errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
