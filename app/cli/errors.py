"""Turn failures of configuration, the database and the broker into one line that names the
(masked) URL, the cause and what to do; the traceback only with ``--debug``/``BANDITQ_DEBUG``."""

from __future__ import annotations

import os
import socket


def debug_enabled() -> bool:
    return os.environ.get("BANDITQ_DEBUG", "").lower() in ("1", "true", "yes", "on")


def _urls() -> tuple[str, str]:
    """The masked database and broker URLs in force (best effort: config may be broken)."""
    from app.config import Settings

    try:
        red = Settings.from_env().redacted()
    except Exception:
        return os.environ.get("BANDITQ_DATABASE_URL", "?"), os.environ.get(
            "BANDITQ_BROKER_URL", "?"
        )
    return red["database_url"], red["broker_url"]


def _cause(exc: BaseException) -> str:
    """The first line of the innermost driver error, without SQLAlchemy's boilerplate."""
    inner = getattr(exc, "orig", None) or exc.__cause__ or exc
    text = str(inner).strip().splitlines()
    line = next((t.strip() for t in text if t.strip()), type(inner).__name__)
    return line.removeprefix("connection failed: ").rstrip(".")


def describe(exc: BaseException) -> str | None:
    """One line for a failure a user can fix, or None for a bug (which keeps its traceback)."""
    import sqlalchemy

    from tasks.errors import BanditqError

    if isinstance(exc, BanditqError):
        return str(exc)
    db_url, broker_url = _urls()
    if isinstance(exc, sqlalchemy.exc.DBAPIError | sqlalchemy.exc.TimeoutError):
        return (
            f"database {db_url}: {_cause(exc)}. Check BANDITQ_DATABASE_URL (host, port, user, "
            "password, database) and that the server is running; `banditq db upgrade` creates "
            "the schema"
        )
    if _is_broker_error(exc):
        return (
            f"broker {broker_url}: {_cause(exc)}. Check BANDITQ_BROKER_URL (host, port, user, "
            "password, vhost) and that RabbitMQ is running"
        )
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError):
        return f"{exc}. Check BANDITQ_HOME and the folder's permissions"
    return None


def _is_broker_error(exc: BaseException) -> bool:
    import amqp.exceptions
    import kombu.exceptions

    return isinstance(
        exc,
        kombu.exceptions.OperationalError
        | amqp.exceptions.AMQPError
        | ConnectionError
        | socket.gaierror
        | TimeoutError,
    )


def check_broker(url: str, transport_options: dict[str, object], timeout: float = 5.0) -> None:
    """Connect once (a daemon starting against a dead or misconfigured broker fails at once
    with a clear message; outages after start-up are ridden out)."""
    import kombu

    with kombu.Connection(url, transport_options=transport_options, connect_timeout=timeout) as c:
        c.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
