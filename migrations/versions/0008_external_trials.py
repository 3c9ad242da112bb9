"""ask/tell: external trials (decided for a caller that runs its own solve) can be
'abandoned' (no tell within the campaign's tell_timeout); trials carry the fallback budget
and the tell (kept until the scheduler recorded it); a result can be censored

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = ("queued", "running", "succeeded", "failed")
NEW_STATES = (*OLD_STATES, "abandoned")
OLD_EVENTS = ("lease_expired", "lease_failed", "retried")
NEW_EVENTS = (*OLD_EVENTS, "abandoned")


def _check(table: str, column: str, values: tuple[str, ...]) -> None:
    from importlib import import_module

    # the same replacement as 0007's (SQLite: triggers; PostgreSQL: the CHECK constraint)
    import_module("migrations.versions.0007_broken_campaigns_and_dead_letters")._check(
        table, column, values
    )


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column('trials', sa.Column('budget', sa.Float(), nullable=True))
    op.add_column('trials', sa.Column('told_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('trials', sa.Column('told', json, nullable=True))
    op.add_column('results', sa.Column('censored', sa.Boolean(), nullable=True))
    _check("trials", "state", NEW_STATES)
    _check("trial_events", "event", NEW_EVENTS)


def downgrade() -> None:
    op.execute("UPDATE trials SET state = 'failed' WHERE state = 'abandoned'")
    op.execute("DELETE FROM trial_events WHERE event = 'abandoned'")
    _check("trial_events", "event", OLD_EVENTS)
    _check("trials", "state", OLD_STATES)
    # In place (SQLite 3.35+): a batch rebuild of trials would break the views over it.
    for column in ('told', 'told_at', 'budget'):
        op.execute(f"ALTER TABLE trials DROP COLUMN {column}")
    op.execute("ALTER TABLE results DROP COLUMN censored")
