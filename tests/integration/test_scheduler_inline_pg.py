"""The inline scheduler tests (tests/unit/test_scheduler_inline.py, on the embedded SQLite
default) again on PostgreSQL, the backend production uses: same tests, the database swapped."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from tests.unit.test_scheduler_inline import *  # noqa: F403 (the tests are collected here)


@pytest.fixture
def embedded_settings(tmp_path: Path, pg_url: str) -> Settings:
    """The unit tests' settings with the database on PostgreSQL (broker: still inline)."""
    return Settings(home=tmp_path / "home", sweep_seconds=1.0, database_url=pg_url)
