"""isolation: campaigns can be 'broken' (with the reason); refused messages kept in dead_letters;
a database identity (chain tags name it: a reset database never reads an old run's solution)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 05:00:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("active", "paused")
NEW = ("active", "paused", "broken")
OLD_EVENTS = ("lease_expired", "lease_failed")
NEW_EVENTS = ("lease_expired", "lease_failed", "retried")


def _allowed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _check(table: str, column: str, values: tuple[str, ...]) -> None:
    """Replace 0005's constraint on ``table.column`` by one allowing ``values``."""
    if op.get_bind().dialect.name == "sqlite":
        # 0005's triggers stand in for the CHECK constraint there
        for when in ("INSERT", f"UPDATE OF {column}"):
            name = f"ck_{table}_{column}_{when.split()[0].lower()}"
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {when} ON {table} "
                f"WHEN NEW.{column} NOT IN ({_allowed(values)}) "
                f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: ck_{table}_{column}: "
                f"{column} must be one of {', '.join(values)}'); END"
            )
        return
    op.drop_constraint(op.f(f"ck_{table}_{column}"), table, type_="check")
    op.create_check_constraint(
        op.f(f"ck_{table}_{column}"), table, f"{column} IN ({_allowed(values)})"
    )


VIEWS = {
    "broken_campaigns": (
        "CREATE VIEW broken_campaigns AS "
        "SELECT c.name AS campaign, c.kind AS kind, c.policy AS policy, "
        "c.broken_reason AS reason FROM campaigns c WHERE c.status = 'broken'"
    ),
    "dead_letter_log": (
        "CREATE VIEW dead_letter_log AS "
        "SELECT d.id AS id, d.source AS source, d.reason AS reason, d.body AS body, d.at AS at "
        "FROM dead_letters d"
    ),
}


def upgrade() -> None:
    op.add_column('campaigns', sa.Column('broken_reason', sa.Text(), nullable=True))
    _check("campaigns", "status", NEW)
    _check("trial_events", "event", NEW_EVENTS)
    op.create_table(
        'dead_letters',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=50), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters')),
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letters_at'), ['at'], unique=False)
    ident = op.create_table(
        'database_identity',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_database_identity')),
    )
    op.bulk_insert(ident, [{'id': str(uuid.uuid4())}])
    for sql in VIEWS.values():
        op.execute(sql)
    if op.get_bind().dialect.name == "postgresql":
        # reader roles (`banditq db grant-reader`) read the new views too
        roles = op.get_bind().execute(sa.text(
            "SELECT DISTINCT grantee FROM information_schema.role_table_grants "
            "WHERE table_name = 'trial_results' AND privilege_type = 'SELECT' "
            "AND grantee <> current_user AND grantee <> 'PUBLIC'"
        )).scalars().all()
        for role in roles:
            for view in VIEWS:
                op.execute(f'GRANT SELECT ON {view} TO "{role}"')


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_table('database_identity')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letters_at'))
    op.drop_table('dead_letters')
    op.execute("UPDATE campaigns SET status = 'paused' WHERE status = 'broken'")
    op.execute("DELETE FROM trial_events WHERE event = 'retried'")
    _check("trial_events", "event", OLD_EVENTS)
    _check("campaigns", "status", OLD)
    # In place on SQLite too (3.35+): a batch rebuild of campaigns would break the views
    # over it and cascade deletes through its foreign keys.
    op.execute("ALTER TABLE campaigns DROP COLUMN broken_reason")
