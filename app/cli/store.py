"""``banditq store``: the array store's garbage collection and statistics."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from app.cli.base import _fail, _settings, cli

store_cli = typer.Typer(
    help="The array store of large matrices and vectors (BANDITQ_STORE_URL).",
    no_args_is_help=True,
)


cli.add_typer(store_cli, name="store")


def _duration(text: str) -> Any:
    from datetime import timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value, unit = (float(text[:-1]), text[-1]) if text[-1] in units else (float(text), "s")
    except (ValueError, IndexError):
        _fail(f"--older-than {text!r}: use a number with s, m, h or d, e.g. 12h")
    return timedelta(seconds=value * units[unit])


@store_cli.command("gc")
def store_gc(
    older_than: Annotated[
        str, typer.Option(help="only blobs older than this (s, m, h, d), e.g. 1h")
    ] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Remove stored blobs that no instance or result refers to (and older than --older-than,
    so an upload whose instance is being submitted is kept)."""
    from app.cli.storeadmin import gc

    out = gc(_settings(), _duration(older_than))
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(
        f"store {out['store']}: removed {out['removed']} blob(s), {out['bytes']:,} bytes; "
        f"{out['kept']} referenced blob(s) kept"
    )


@store_cli.command("stats")
def store_stats(
    as_json: Annotated[bool, typer.Option("--json", help="JSON rows on stdout")] = False,
) -> None:
    """Stored blobs and bytes per campaign (a blob shared by many instances counts once)."""
    from app.cli.storeadmin import describe, stats

    s = _settings()
    rows = stats(s)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    typer.echo(f"store {describe(s)}")
    for r in rows:
        typer.echo(f"{r['campaign']:<40} {r['blobs']:>8} blob(s) {r['bytes']:>16,} bytes")
