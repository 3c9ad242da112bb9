"""The ``banditq`` Typer app, shared helpers and the entry point (one-line errors)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer

from app.config import ENV_VARS, Settings

ENV_HELP = (
    "Environment variables (read at start-up):\n\n"
    + "\n\n".join(f"  {k}: {h}" for k, (_n, h) in ENV_VARS.items())
    + "\n\n  BANDITQ_DEBUG: 1 = print the full traceback of an error (same as --debug)"
    + "\n\nErrors print one line and exit with status 2; --debug (anywhere on the command "
    "line) shows the traceback."
)


cli = typer.Typer(
    help="banditq: learn the best solver or inference setting per instance, online.",
    # after the commands: what a newcomer looks for first comes first
    epilog=ENV_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _settings() -> Settings:
    return Settings.from_env()  # a malformed variable raises ConfigError, handled in main()


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _client() -> Any:
    from app.client import Client
    from tasks.errors import SchemaMissingError

    try:
        return Client()
    except SchemaMissingError as exc:
        _fail(str(exc))


def main() -> None:
    from app.cli.errors import debug_enabled, describe

    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        os.environ["BANDITQ_DEBUG"] = "1"
    try:
        cli()
    except Exception as exc:  # errors that say what to do, not a traceback
        line = describe(exc)
        if line is None or debug_enabled():
            raise
        typer.secho(f"error: {line} (details: --debug or BANDITQ_DEBUG=1)", fg="red", err=True)
        sys.exit(2)
