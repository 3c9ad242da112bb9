"""trials.budget_unit: a decision's budget may be in products of the instance's matrix with
a vector (set before a campaign knows its fallback's cost; the worker converts it)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('trials', sa.Column('budget_unit', sa.String(length=16), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35+): a batch rebuild of trials would break the views over it.
    op.execute("ALTER TABLE trials DROP COLUMN budget_unit")
