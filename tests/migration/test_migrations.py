"""Upgrade from empty reproduces the models (`alembic check` clean); downgrade works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


SECOND_MIGRATION = '''"""a later migration (test only)"""

import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("bq_later", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("bq_later")
'''


@pytest.fixture
def later_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """This installation's migrations plus one later revision, as a newer banditq ships."""
    import shutil

    folder = tmp_path / "scripts"
    shutil.copytree(db.SCRIPT_LOCATION, folder, ignore=shutil.ignore_patterns("__pycache__"))
    head = db.head_revision()
    (folder / "versions" / "9999_later.py").write_text(SECOND_MIGRATION.format(head=head))
    monkeypatch.setattr(db, "SCRIPT_LOCATION", str(folder))
    return "9999"


def test_embedded_client_applies_a_later_migration(tmp_path: Path, later_scripts: str) -> None:
    """A database migrated by an older release (tables present, older revision) is brought to
    the head revision when the embedded client opens it, in place."""
    from app.client import Client
    from app.config import Settings

    settings = Settings(home=tmp_path / "home")
    (tmp_path / "home").mkdir()
    db.upgrade(settings.database_url, "0001")
    eng = create_engine(settings.database_url)
    assert db.current_revision(eng) == "0001"
    assert not db.is_current(eng)  # the tables exist, the revision is older
    Client(settings=settings).close()
    assert db.current_revision(eng) == later_scripts
    assert inspect(eng).has_table("bq_later")
    eng.dispose()


def test_postgresql_client_names_the_revision_to_upgrade(later_scripts: str) -> None:
    from app.client import Client
    from tasks.errors import SchemaMissingError

    require(_port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = fresh_pg_database()
    try:
        url = pg_url_of(name)
        db.upgrade(url, "0001")
        with pytest.raises(SchemaMissingError, match="revision 0001.*needs 9999.*db upgrade"):
            Client(url, "amqp://guest:guest@127.0.0.1:5672//")
        db.upgrade(url)
        Client(url, "amqp://guest:guest@127.0.0.1:5672//").close()
    finally:
        drop_pg_database(name)


def test_upgrade_in_place_keeps_data_and_gives_readers_the_new_views() -> None:
    """A PostgreSQL database at 0003 with a campaign and a reader role made by an older
    `grant-reader` (trial_results only): after `db upgrade` the reader selects the report
    views, sees the old rows, and still cannot read tables."""
    import uuid

    from sqlalchemy.exc import ProgrammingError

    require(_port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = fresh_pg_database()
    role = f"bq_old_reader_{uuid.uuid4().hex[:6]}"
    url = pg_url_of(name)
    try:
        db.upgrade(url, "0003")
        eng = create_engine(url, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(
                text(
                    "INSERT INTO campaigns (name, kind, policy, policy_config, context_features, "
                    "settings, seed, max_in_flight, max_attempts, status, n_instances, n_updates, "
                    "created_at) VALUES ('old', 'noop', 'random', '{}', '[]', '{}', 0, 1, 1, "
                    "'active', 0, 0, now())"
                )
            )
            c.execute(text(f'CREATE ROLE "{role}" LOGIN'))
            c.execute(text(f'GRANT SELECT ON trial_results TO "{role}"'))
        db.upgrade(url)
        reader = create_engine(url.replace("postgres@", f"{role}@", 1))
        with reader.connect() as c:
            assert c.execute(text("SELECT campaign FROM campaign_overview")).scalars().all() == [
                "old"
            ]
            for view in (
                "campaign_arms",
                "result_attempts",
                "trial_event_log",
                "policy_latest",
                "table_costs",
            ):
                c.execute(text(f"SELECT * FROM {view}")).all()
            assert "arm_index" in list(c.execute(text("SELECT * FROM trial_results")).keys())
        with reader.connect() as c, pytest.raises(ProgrammingError, match="permission"):
            c.execute(text("SELECT * FROM trial_events"))
        reader.dispose()
        db.downgrade(url, "0003")  # and back: the old view returns
        with eng.connect() as c:
            assert "arm_index" not in list(c.execute(text("SELECT * FROM trial_results")).keys())
            c.execute(text(f'DROP OWNED BY "{role}"'))
        eng.dispose()
    finally:
        drop_pg_database(name)
        admin = create_engine(pg_url_of("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_state_columns_refuse_values_outside_their_enums(empty_url: str) -> None:
    """Migration 0005: a database at 0004 with rows upgrades in place; afterwards a state
    outside the enum is refused (PostgreSQL: CHECK constraints; SQLite: triggers), the enum's
    own values are accepted, and a downgrade lifts the rule again."""
    from sqlalchemy.exc import IntegrityError

    from models.states import InstanceStatus, TrialState

    db.upgrade(empty_url, "0004")
    eng = create_engine(empty_url)
    with eng.begin() as c:
        _old_campaign(c, "pending")
    eng.dispose()
    db.upgrade(empty_url)
    eng = create_engine(empty_url)
    for sql in (
        "UPDATE instances SET status = 'finished'",
        "UPDATE campaigns SET status = 'archived'",
        "INSERT INTO instances (campaign_id, seq, context, spec, status, created_at) "
        "VALUES (1, 1, '{}', '{}', 'lost', CURRENT_TIMESTAMP)",
    ):
        with (
            pytest.raises(IntegrityError, match="ck_(instances|campaigns)_status"),
            eng.begin() as c,
        ):
            c.execute(text(sql))
    with eng.begin() as c:
        for status in InstanceStatus:
            c.execute(text("UPDATE instances SET status = :s"), {"s": status.value})
        c.execute(text("UPDATE campaigns SET status = 'paused'"))
        assert c.execute(text("SELECT name FROM campaigns")).scalars().all() == ["old"]
    assert {s.value for s in TrialState} == {
        "queued",
        "running",
        "succeeded",
        "failed",
        "abandoned",
    }
    eng.dispose()
    db.downgrade(empty_url, "0004")
    eng = create_engine(empty_url)
    with eng.begin() as c:
        c.execute(text("UPDATE instances SET status = 'anything'"))
    eng.dispose()


def test_store_tags_and_uncompressed_chunks_upgrade_in_place(empty_url: str) -> None:
    """Migration 0006 on a database at 0005 holding a blob: the blob survives, tags can be
    written, and on PostgreSQL chunks are stored out of line without compression (floats do
    not compress; trying cost ~6x the write); a downgrade drops the tags again."""
    from sqlalchemy import inspect

    db.upgrade(empty_url, "0005")
    eng = create_engine(empty_url)
    with eng.begin() as c:
        c.execute(
            text(
                "INSERT INTO store_blobs (sha256, nbytes, created_at) "
                "VALUES (:h, 3, CURRENT_TIMESTAMP)"
            ),
            {"h": "a" * 64},
        )
    eng.dispose()
    db.upgrade(empty_url)
    eng = create_engine(empty_url)
    with eng.begin() as c:
        assert c.execute(text("SELECT count(*) FROM store_blobs")).scalar() == 1
        c.execute(
            text(
                "INSERT INTO store_tags (name, value, sha256, created_at) "
                "VALUES ('solution-1', '{}', :h, CURRENT_TIMESTAMP)"
            ),
            {"h": "a" * 64},
        )
        if eng.dialect.name == "postgresql":
            storage = c.execute(
                text(
                    "SELECT attstorage FROM pg_attribute WHERE attrelid = "
                    "'store_chunks'::regclass AND attname = 'data'"
                )
            ).scalar()
            assert storage == "e"
    eng.dispose()
    db.downgrade(empty_url, "0005")
    eng = create_engine(empty_url)
    assert "store_tags" not in inspect(eng).get_table_names()
    eng.dispose()


def test_external_trials_upgrade_in_place(empty_url: str) -> None:
    """Migration 0008 on a database at 0007 holding a trial: it survives, can be told
    (told_at, told), carry a budget, be abandoned, and its result be censored; the trial
    state check still refuses other values; a downgrade turns abandoned trials into failed
    ones and drops the columns."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import IntegrityError

    db.upgrade(empty_url, "0007")
    eng = create_engine(empty_url)
    with eng.begin() as c:
        _old_trial(c)
    eng.dispose()
    db.upgrade(empty_url)
    eng = create_engine(empty_url)
    with eng.begin() as c:
        c.execute(
            text(
                "UPDATE trials SET budget = 3.5, told_at = CURRENT_TIMESTAMP, "
                "told = '{\"cost\": 1}', state = 'abandoned'"
            )
        )
        row = c.execute(text("SELECT budget, state FROM trials")).one()
        assert tuple(row) == (3.5, "abandoned")
        c.execute(
            text(
                "INSERT INTO results (trial_id, campaign_id, attempt, status, cost, metrics, "
                "applied, censored, recorded_at) VALUES (1, 1, 1, 'succeeded', 2.0, '{}', "
                "true, true, CURRENT_TIMESTAMP)"
            )
        )
    with pytest.raises(IntegrityError, match="ck_trials_state"), eng.begin() as c:
        c.execute(text("UPDATE trials SET state = 'lost'"))
    eng.dispose()
    db.downgrade(empty_url, "0007")
    eng = create_engine(empty_url)
    with eng.begin() as c:
        assert c.execute(text("SELECT state FROM trials")).scalar() == "failed"
    cols = {col["name"] for col in inspect(eng).get_columns("trials")}
    assert not cols & {"budget", "told_at", "told"}
    assert "censored" not in {col["name"] for col in inspect(eng).get_columns("results")}
    eng.dispose()


def test_budget_unit_upgrade_in_place(empty_url: str) -> None:
    """Migration 0009 on a database at 0008 holding a budgeted trial: the trial keeps its
    budget, in the cost's unit (no unit), and can be given one; a downgrade drops it."""
    from sqlalchemy import inspect

    db.upgrade(empty_url, "0008")
    eng = create_engine(empty_url)
    with eng.begin() as c:
        _old_trial(c, budget=2.5)
    eng.dispose()
    db.upgrade(empty_url)
    eng = create_engine(empty_url)
    with eng.begin() as c:
        assert tuple(c.execute(text("SELECT budget, budget_unit FROM trials")).one()) == (
            2.5,
            None,
        )
        c.execute(text("UPDATE trials SET budget_unit = 'matvec'"))
        assert c.execute(text("SELECT budget_unit FROM trials")).scalar() == "matvec"
    eng.dispose()
    db.downgrade(empty_url, "0008")
    eng = create_engine(empty_url)
    assert "budget_unit" not in {col["name"] for col in inspect(eng).get_columns("trials")}
    with eng.begin() as c:
        assert c.execute(text("SELECT budget FROM trials")).scalar() == 2.5
    eng.dispose()


def _old_trial(c: Any, budget: float | None = None) -> None:
    """A decided campaign 'old' with one arm and one running trial 't-1' (with ``budget``
    where given: revisions since 0008 have the column)."""
    _old_campaign(c, "decided")
    c.execute(
        text("INSERT INTO arms (campaign_id, \"index\", name, value) VALUES (1, 0, 'a', '{}')")
    )
    extra = ("", "") if budget is None else (", budget", f", {budget!r}")
    c.execute(
        text(
            "INSERT INTO trials (uuid, campaign_id, instance_id, arm_id, arm_index, "
            "propensity, policy_name, policy_version, reason, state, attempt, "
            f"created_at{extra[0]}) "
            "VALUES ('t-1', 1, 1, 1, 0, 1.0, 'random', '1', 'policy', 'running', 1, "
            f"CURRENT_TIMESTAMP{extra[1]})"
        )
    )


def _old_campaign(c: Any, status: str) -> None:
    """A campaign 'old' (id 1) with one instance (id 1) of ``status``, written in SQL as any
    schema revision since 0001 takes it."""
    c.execute(
        text(
            "INSERT INTO campaigns (name, kind, policy, policy_config, context_features, "
            "settings, seed, max_in_flight, max_attempts, status, n_instances, n_updates, "
            "created_at) VALUES ('old', 'noop', 'random', '{}', '[]', '{}', 0, 1, 1, "
            "'active', 1, 0, CURRENT_TIMESTAMP)"
        )
    )
    c.execute(
        text(
            "INSERT INTO instances (campaign_id, seq, context, spec, status, created_at) "
            "VALUES (1, 0, '{}', '{}', :s, CURRENT_TIMESTAMP)"
        ),
        {"s": status},
    )


def test_processes_starting_together_on_a_fresh_embedded_home_all_get_the_schema(
    tmp_path: Path,
) -> None:
    """A newcomer starts the scheduler, a worker and a client at once: each upgrades the
    fresh SQLite file (before the lock, the second died on "table ... already exists")."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'home' / 'banditq.db'}"
    code = f"from app import db; db.upgrade({url!r})"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outs = [(p.wait(120), p.stderr.read().decode() if p.stderr else "") for p in procs]
    assert all(rc == 0 for rc, _ in outs), [err[-500:] for rc, err in outs if rc]
    engine = create_engine(url)
    assert db.is_current(engine)
    engine.dispose()
