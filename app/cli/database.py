"""``banditq db``: schema migrations in place and the read-only reader role."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.base import _fail, _settings, cli

db_cli = typer.Typer(help="Database schema commands.", no_args_is_help=True)


cli.add_typer(db_cli, name="db")


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply migrations in place (existing data is kept). URL: BANDITQ_DATABASE_URL."""
    from app import db

    s = _settings()
    db.upgrade(s.database_url, revision)
    typer.echo(f"database {s.redacted()['database_url']} at revision {revision}")


@db_cli.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision, e.g. base")],
) -> None:
    """Revert migrations down to REVISION."""
    from app import db

    db.downgrade(_settings().database_url, revision)
    typer.echo(f"database at revision {revision}")


@db_cli.command("grant-reader")
def db_grant_reader(
    role: Annotated[str, typer.Argument(help="role to create or update (lower-case identifier)")],
    login: Annotated[
        bool, typer.Option(help="let the role log in (set its password yourself)")
    ] = False,
) -> None:
    """Create a read-only PostgreSQL role for analysts: SELECT on the views, nothing else."""
    from app import db

    try:
        db.grant_reader(_settings().database_url, role, login=login)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"role {role}: SELECT on {', '.join(db.READER_VIEWS)}; no other privileges")
