"""state columns as enums: CHECK constraints on campaign, instance, trial, result and event states

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The values as of this revision (models/states.py may grow; a later migration then replaces
# a constraint). Names follow the metadata's naming convention: ck_<table>_<name>.
CHECKS = {
    ("campaigns", "status"): ("active", "paused"),
    ("instances", "status"): ("pending", "decided", "done", "failed"),
    ("trials", "state"): ("queued", "running", "succeeded", "failed"),
    ("results", "status"): ("succeeded", "failed"),
    ("trial_events", "event"): ("lease_expired", "lease_failed"),
}


def _allowed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot add a constraint to a table in place, and rebuilding these tables
        # would cascade deletes through their foreign keys: triggers enforce the same rule.
        for (table, column), values in CHECKS.items():
            for when in ("INSERT", "UPDATE OF " + column):
                op.execute(
                    f"CREATE TRIGGER ck_{table}_{column}_{when.split()[0].lower()} "
                    f"BEFORE {when} ON {table} "
                    f"WHEN NEW.{column} NOT IN ({_allowed(values)}) "
                    f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: ck_{table}_{column}: "
                    f"{column} must be one of {', '.join(values)}'); END"
                )
        return
    for (table, column), values in CHECKS.items():
        op.create_check_constraint(
            op.f(f"ck_{table}_{column}"), table, f"{column} IN ({_allowed(values)})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, column in CHECKS:
            for when in ("insert", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS ck_{table}_{column}_{when}")
        return
    for table, column in CHECKS:
        op.drop_constraint(op.f(f"ck_{table}_{column}"), table, type_="check")
