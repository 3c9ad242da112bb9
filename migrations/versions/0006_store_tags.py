"""store tags: a chained instance's solution named by instance id; blob chunks stored
uncompressed (PostgreSQL)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'store_tags',
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_store_tags')),
    )
    with op.batch_alter_table('store_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_store_tags_sha256'), ['sha256'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        # Arrays of floats do not compress: trying (pglz, the default for bytea) cost ~6x
        # the write itself. Out of line, uncompressed. Applies to rows written from now on.
        op.execute("ALTER TABLE store_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE store_chunks ALTER COLUMN data SET STORAGE EXTENDED")
    with op.batch_alter_table('store_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_store_tags_sha256'))
    op.drop_table('store_tags')
