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


broker_cli = typer.Typer(help="RabbitMQ commands.", no_args_is_help=True)
cli.add_typer(broker_cli, name="broker")


@broker_cli.command("users")
def broker_users(
    api: Annotated[
        str, typer.Option(help="RabbitMQ management API, e.g. http://rabbitmq:15672")
    ] = "http://127.0.0.1:15672",
    admin: Annotated[str, typer.Option(help="an administrator of the broker")] = "guest",
    admin_password: Annotated[
        str, typer.Option(envvar="RABBITMQ_ADMIN_PASS", help="its password")
    ] = "guest",
    vhost: Annotated[str, typer.Option(help="virtual host")] = "/",
    print_only: Annotated[
        bool, typer.Option("--print", help="print rabbitmqctl commands instead of applying")
    ] = False,
) -> None:
    """Create banditq-scheduler, banditq-worker and banditq-client, each allowed only what
    its role needs (clients can publish wake-ups and nothing else: they cannot read trials or
    forge results). Passwords: BANDITQ_SCHEDULER_MQ_PASSWORD, BANDITQ_WORKER_MQ_PASSWORD,
    BANDITQ_CLIENT_MQ_PASSWORD. Point each process's BANDITQ_BROKER_URL at its user."""
    import base64
    import json
    import os
    import urllib.parse
    import urllib.request

    from app.broker_users import permissions, rabbitmqctl_commands, user_name

    queue = _settings().queue
    if print_only:
        for role in permissions(queue):
            typer.echo(f"rabbitmqctl add_user {user_name(role)} '<password>'")
        for cmd in rabbitmqctl_commands(queue, vhost):
            typer.echo(" ".join(f"'{a}'" if any(c in a for c in "^$()|\\") else a for a in cmd))
        return
    token = base64.b64encode(f"{admin}:{admin_password}".encode()).decode()
    v = urllib.parse.quote(vhost, safe="")

    def put(path: str, body: dict[str, str]) -> None:
        req = urllib.request.Request(
            f"{api.rstrip('/')}/api/{path}",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"content-type": "application/json", "authorization": f"Basic {token}"},
        )
        try:
            urllib.request.urlopen(req, timeout=30).close()
        except OSError as exc:
            _fail(f"cannot reach the management API at {api}: {exc}; is the plugin enabled?")

    for role, (configure, write, read) in permissions(queue).items():
        name = user_name(role)
        password = os.environ.get(f"BANDITQ_{role.upper()}_MQ_PASSWORD") or role
        put(f"users/{urllib.parse.quote(name, safe='')}", {"password": password, "tags": ""})
        put(
            f"permissions/{v}/{urllib.parse.quote(name, safe='')}",
            {"configure": configure, "write": write, "read": read},
        )
        typer.echo(f"{name}: configure {configure}  write {write}  read {read}")
