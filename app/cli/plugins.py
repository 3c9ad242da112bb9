"""``banditq kinds`` and ``banditq policies``: what is installed, from where."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from app.cli.base import cli


@cli.command()
def policies() -> None:
    """List the installed policies and the distribution each comes from (``default`` is the
    best one measured; a kind may name its own)."""
    from tasks.plugins import POLICIES_GROUP

    _list_plugins(POLICIES_GROUP, _policy_doc)


@cli.command()
def kinds() -> None:
    """List the installed trial kinds and the distribution each comes from."""
    from tasks.plugins import KINDS_GROUP

    _list_plugins(KINDS_GROUP, _kind_doc)


def _first_line(cls: type) -> str:
    """The summary line of a class's docstring, else of its module's."""
    for obj in (cls, sys.modules.get(cls.__module__)):
        doc = (getattr(obj, "__doc__", None) or "").strip()
        if doc:
            return doc.splitlines()[0]
    return ""


def _policy_doc(name: str) -> str:
    from app.policies.registry import DEFAULT_POLICY, policy_class

    mark = "  (default)" if name == DEFAULT_POLICY else ""
    return _first_line(policy_class(name)) + mark


def _kind_doc(name: str) -> str:
    from tasks.kinds import get_kind

    kind = get_kind(name)
    extra = f"  (default policy: {kind.default_policy})" if kind.default_policy else ""
    return _first_line(type(kind)) + extra


#: what a user must do after installing a plugin (processes read entry points at start-up)
RESTART_NOTE = (
    "\nPlugins are read when a process starts: after installing or upgrading one, restart "
    "the scheduler (it loads policies and kinds) and every worker that runs a new kind; a "
    "client picks it up at its next start."
)


def _list_plugins(group: str, describe: Callable[[str], str]) -> None:
    """One line per entry point: name, distribution and version, and its summary; one that
    fails to import is listed with the reason (and the exit status is 1)."""
    from tasks.plugins import PluginError, plugins

    failed = False
    for name, p in sorted(plugins(group).items()):
        try:
            text = describe(name)
        except PluginError as exc:
            text, failed = f"BROKEN: {exc.message}", True
        typer.echo(f"{name:16} {p.dist + ' ' + p.version:18} {text}")
    typer.echo(RESTART_NOTE)
    if failed:
        raise typer.Exit(1)
