"""Shared fixtures: a fresh PostgreSQL database per test (cloned from a migrated template),
a unique RabbitMQ queue prefix per test, and embedded settings in a temporary folder.

A missing service skips on a laptop and fails in CI (CI=true)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.config import Settings

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The sleep kind's fault injection (kill_worker) exists only in test processes and the
# workers they start (inherited through the environment).
os.environ["BANDITQ_TEST_HOOKS"] = "1"
PG_ADMIN = os.environ.get(
    "BANDITQ_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
AMQP = os.environ.get("BANDITQ_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require(ok: bool, what: str) -> None:
    if not ok:
        if CI:
            pytest.fail(f"{what} is not reachable (CI=true: a missing service is a failure)")
        pytest.skip(f"{what} is not reachable")


def _admin():  # type: ignore[no-untyped-def]
    # pre-ping: a fault test restarts PostgreSQL, killing pooled connections under us
    return create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    require(_port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    from app import db

    name = f"bq_tmpl_{os.getpid()}"
    eng = _admin()
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    db.upgrade(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    yield name
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def fresh_pg_database(template: str | None = None) -> str:
    name = f"bq_t_{uuid.uuid4().hex[:12]}"
    eng = _admin()
    with eng.connect() as c:
        c.execute(
            text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        )
    eng.dispose()
    return name


def drop_pg_database(name: str) -> None:
    eng = _admin()
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def pg_url_of(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = fresh_pg_database(pg_template)
    yield pg_url_of(name)
    drop_pg_database(name)


@pytest.fixture
def amqp_url() -> str:
    require(_port_open("127.0.0.1", 5672), "RabbitMQ on 127.0.0.1:5672")
    return AMQP


@pytest.fixture
def queue_name(amqp_url: str) -> Iterator[str]:
    name = f"bqtest.{uuid.uuid4().hex[:10]}"
    yield name
    import kombu

    with kombu.Connection(amqp_url) as conn:
        ch = conn.channel()
        kinds = [f"{name}.kind.{k}" for k in ("sor", "ssor-pcg", "noop", "sleep", "table")]
        kinds += [f"{name}.kind.{k}" for k in ("inference", "scipy-gmres")]
        for q in (name, f"{name}.results", f"{name}.events", f"{name}.dev.cpu", *kinds):
            try:
                ch.queue_delete(q)
            except Exception:
                ch = conn.channel()


@pytest.fixture
def pg_settings(tmp_path: Path, pg_url: str, amqp_url: str, queue_name: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=pg_url,
        broker_url=amqp_url,
        queue=queue_name,
        sweep_seconds=1.0,
    )


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", sweep_seconds=1.0)
