"""`banditq db grant-reader`: the analyst role reads the views and nothing else."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from app import db
from tests.conftest import _admin


def test_reader_role_selects_views_only(pg_url: str) -> None:
    role = f"bq_reader_{uuid.uuid4().hex[:8]}"
    try:
        db.grant_reader(pg_url, role, login=True)
        db.grant_reader(pg_url, role, login=True)  # idempotent
        as_reader = create_engine(pg_url.replace("postgres@", f"{role}@", 1))
        with as_reader.connect() as c:
            assert c.execute(text("SELECT count(*) FROM trial_results")).scalar() == 0
        for stmt in (
            "SELECT * FROM trials",
            "SELECT * FROM campaigns",
            "INSERT INTO campaigns (name) VALUES ('x')",
        ):
            with as_reader.connect() as c, pytest.raises(ProgrammingError, match="permission"):
                c.execute(text(stmt))
        as_reader.dispose()
        with pytest.raises(ValueError, match="role="):
            db.grant_reader(pg_url, 'x"; DROP TABLE trials; --')
    finally:
        admin_db = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin_db.connect() as c:
            if c.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
                c.execute(text(f'DROP OWNED BY "{role}"'))
        admin_db.dispose()
        eng = _admin()
        with eng.connect() as c:
            c.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        eng.dispose()
