"""Upgrade from empty reproduces the models (`alembic check` clean); downgrade works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from app import db
from models import Base
from tests.conftest import _port_open, drop_pg_database, fresh_pg_database, pg_url_of, require


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    require(_port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = fresh_pg_database()
    yield pg_url_of(name)
    drop_pg_database(name)


def test_upgrade_from_empty_equals_the_models(empty_url: str) -> None:
    db.upgrade(empty_url)
    eng = create_engine(empty_url)
    with eng.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []
    command.check(db.alembic_config(empty_url))  # raises when autogenerate finds changes
    with eng.connect() as conn:
        conn.execute(text("SELECT campaign, status, iterations FROM trial_results"))
    eng.dispose()


def test_downgrade_to_base_and_up_again(empty_url: str) -> None:
    db.upgrade(empty_url)
    db.downgrade(empty_url, "base")
    eng = create_engine(empty_url)
    assert set(inspect(eng).get_table_names()) <= {"alembic_version"}
    eng.dispose()
    db.upgrade(empty_url)
    eng = create_engine(empty_url)
    assert {"campaigns", "trials", "results"} <= set(inspect(eng).get_table_names())
    eng.dispose()
