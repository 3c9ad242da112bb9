"""Trial kinds and policies from installed distributions, by entry point.

Two groups: ``banditq.kinds`` (a :class:`app.TrialKind` subclass, or an instance) and
``banditq.policies`` (a :class:`app.Policy` subclass). The built-in ones are declared in this
distribution's own ``pyproject.toml`` the same way, so there is one path. Objects load lazily,
on first use of their name, and are cached per process; the entry-point listing is read once
per process (:func:`refresh` re-reads it, for tests that add a distribution).

Thread-safety: loading is idempotent, so a race only imports a module twice.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
from dataclasses import dataclass
from functools import cache
from typing import Any

from tasks.errors import InputError

KINDS_GROUP = "banditq.kinds"
POLICIES_GROUP = "banditq.policies"
#: The user-facing field each group's names are given in.
FIELD = {KINDS_GROUP: "kind", POLICIES_GROUP: "policy"}


@dataclass(frozen=True)
class Plugin:
    """One entry point: ``name = value`` from ``dist`` (``version``), needing ``extras``."""

    name: str
    group: str
    value: str
    module: str
    attr: str
    dist: str
    version: str
    extras: tuple[str, ...]

    def describe(self) -> str:
        where = f"{self.dist} {self.version}"
        return f"entry point {self.group}:{self.name} = {self.value!r} (from {where})"


class PluginError(InputError):
    """A plugin is unknown, does not import, or is not what its group promises."""


@cache
def plugins(group: str) -> dict[str, Plugin]:
    """Every installed entry point of ``group`` by name. On a name clash the first
    distribution found wins (importlib.metadata's path order), as pytest does."""
    out: dict[str, Plugin] = {}
    for ep in md.entry_points(group=group):
        if ep.name in out:
            continue
        dist = getattr(ep, "dist", None)
        out[ep.name] = Plugin(
            name=ep.name,
            group=group,
            value=ep.value,
            module=ep.module,
            attr=ep.attr or "",
            dist=dist.metadata["Name"] if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            extras=tuple(ep.extras),
        )
    return out


def refresh() -> None:
    """Forget the cached listing and loaded objects (after installing a distribution)."""
    plugins.cache_clear()
    load.cache_clear()


def names(group: str) -> list[str]:
    return sorted(plugins(group))


@cache
def load(group: str, name: str) -> Any:
    """The object ``name`` of ``group`` names, imported now. Raises :class:`PluginError`
    naming the user's field, the entry point and what to install when it cannot."""
    field = FIELD.get(group, group)
    found = plugins(group)
    plugin = found.get(name)
    if plugin is None:
        allowed = ", ".join(sorted(found)) or "none are installed"
        raise PluginError(
            field,
            f"unknown {field} {name!r}: no installed distribution registers it in the entry "
            f"point group {group}; installed: {allowed}",
        )
    try:
        obj: Any = importlib.import_module(plugin.module)
        for part in plugin.attr.split(".") if plugin.attr else ():
            obj = getattr(obj, part)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        hint = (
            f"install the extra: pip install '{plugin.dist}[{','.join(plugin.extras)}]'"
            if plugin.extras
            else f"install what it needs (missing: {missing})"
        )
        raise PluginError(field, f"{plugin.describe()} failed to import: {exc}; {hint}") from exc
    except AttributeError as exc:
        raise PluginError(field, f"{plugin.describe()} names nothing importable: {exc}") from exc
    except Exception as exc:  # a plugin's own import-time error: say whose it is
        raise PluginError(
            field, f"{plugin.describe()} raised on import: {type(exc).__name__}: {exc}"
        ) from exc
    return obj


def plugin(group: str, name: str) -> Plugin | None:
    return plugins(group).get(name)
