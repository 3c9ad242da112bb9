"""Engines, sessions and schema upgrades for both the embedded SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import sessionmaker

import migrations
from models.base import json_dumps


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of an SQLite database file (the embedded default's ``BANDITQ_HOME``
    may not exist yet); other URLs are left alone."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings each backend needs for several processes at once."""
    if url.startswith("sqlite"):
        ensure_sqlite_folder(url)
        engine = create_engine(
            url, connect_args={"timeout": 30}, json_serializer=json_dumps, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the client read while the scheduler writes from another process.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    engine = create_engine(url, json_serializer=json_dumps, **kwargs)
    if "pool_pre_ping" not in kwargs:  # the scheduler opts out of pings entirely
        _ping_when_idle(engine)
    return engine


#: a pooled connection idle for longer than this is pinged before use
PING_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections that sat in the pool: a ping before
    reuse after ``PING_IDLE_S`` of idleness (a restarted server killed them), and none for a
    connection returned moments ago. ``pool_pre_ping`` would add a round trip to every
    checkout, several per solve; a server lost mid-burst surfaces as an error that the
    scheduler retries, and SQLAlchemy then replaces the whole pool."""
    import time

    from sqlalchemy import exc

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _maybe_ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as e:
            raise exc.DisconnectionError() from e
        if not alive:
            raise exc.DisconnectionError()


def session_factory(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


#: The Alembic script folder (tests point it at a copy holding an extra revision).
SCRIPT_LOCATION = str(Path(migrations.__file__).parent)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    # '%' must be escaped for ConfigParser interpolation (URL-encoded passwords).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (in place: existing data is kept). On SQLite the
    processes that start together on a fresh embedded home (the client, ``banditq
    scheduler``, ``banditq worker``) take turns under a file lock: the first migrates, the
    others find the schema current (without the lock the second failed on "table already
    exists" and exited)."""
    ensure_sqlite_folder(url)
    with _migration_lock(url):
        command.upgrade(alembic_config(url), revision)


@contextlib.contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
    if not path or path == ":memory:":
        yield  # PostgreSQL: alembic's own transaction (DDL is transactional there)
        return
    import fcntl

    with open(f"{path}.migrate-lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest migration this installation ships."""
    return ScriptDirectory(SCRIPT_LOCATION).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: Engine) -> bool:
    """True when the database is at this installation's head revision (tables that exist
    at an older revision are not enough: a later migration would never be applied)."""
    return current_revision(engine) == head_revision()


def is_behind(engine: Engine) -> bool:
    """True when the database has no schema or an older revision this installation knows
    (a newer revision, from a newer banditq, is not "behind")."""
    current = current_revision(engine)
    if current is None:
        return True
    head = head_revision()
    if current == head:
        return False
    known = {rev.revision for rev in ScriptDirectory(SCRIPT_LOCATION).walk_revisions()}
    return current in known


READER_VIEWS = (
    "trial_results",
    "campaign_overview",
    "campaign_arms",
    "result_attempts",
    "trial_event_log",
    "policy_latest",
    "table_costs",
    "broken_campaigns",
    "dead_letter_log",
)


def grant_reader(url: str, role: str, login: bool = False) -> None:
    """Create (if needed) a PostgreSQL role that can SELECT from the views and nothing else."""
    import re

    from sqlalchemy import text

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError(f"role={role!r}: use lower-case letters, digits and _ (max 63)")
    engine = make_engine(url)
    if engine.dialect.name != "postgresql":
        raise ValueError("grant-reader needs PostgreSQL (SQLite has no roles)")
    # The role name is a checked identifier (regex above); everything else is constant SQL.
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
        if exists.first() is None:
            conn.execute(text(f'CREATE ROLE "{role}" {"LOGIN" if login else "NOLOGIN"}'))
        conn.execute(text(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        for view in READER_VIEWS:
            conn.execute(text(f'GRANT SELECT ON {view} TO "{role}"'))
    engine.dispose()
