"""Engines, sessions and schema upgrades for both the embedded SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import sessionmaker

import migrations


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings each backend needs for several processes at once."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

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
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # '%' must be escaped for ConfigParser interpolation (URL-encoded passwords).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (in place: existing data is kept)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def is_current(engine: Engine) -> bool:
    return inspect(engine).has_table("alembic_version") and inspect(engine).has_table("trials")


READER_VIEWS = ("trial_results",)


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
