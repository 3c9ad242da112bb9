"""Trial kinds by name, from the ``banditq.kinds`` entry points (see :mod:`tasks.plugins`)."""

from __future__ import annotations

from typing import Any

from tasks.kinds.base import Outcome, TrialKind
from tasks.plugins import KINDS_GROUP, PluginError, load, names, plugin

#: one instance per kind class (the loaded class is cached by tasks.plugins.load)
_INSTANCES: dict[Any, TrialKind] = {}


def get_kind(name: str) -> TrialKind:
    """The (shared, stateless) kind registered as ``name``; :class:`tasks.plugins.PluginError`
    (an ``InputError`` on field ``kind``) when it is unknown, fails to import or is not a
    trial kind."""
    if not isinstance(name, str):
        raise PluginError("kind", f"must be a string, got {name!r}")
    loaded: Any = load(KINDS_GROUP, name)
    kind = _INSTANCES.get(loaded)
    if kind is not None:
        return kind
    where = plugin(KINDS_GROUP, name)
    what = where.describe() if where is not None else repr(name)
    obj = loaded() if isinstance(loaded, type) and issubclass(loaded, TrialKind) else loaded
    if not isinstance(obj, TrialKind):
        raise PluginError(
            "kind", f"{what} loads {loaded!r}: not a subclass (or instance) of app.TrialKind"
        )
    if getattr(obj, "name", None) != name:
        raise PluginError("kind", f"{what} loads a kind named {getattr(obj, 'name', None)!r}")
    _INSTANCES[loaded] = obj
    return obj


def kind_names() -> list[str]:
    return names(KINDS_GROUP)


__all__ = ["Outcome", "TrialKind", "get_kind", "kind_names"]
