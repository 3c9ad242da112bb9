"""The scheduler's SQL on PostgreSQL: set-based statements, as many per step early in a
campaign as late, and few (results, decisions, marks: one statement each)."""

from __future__ import annotations

from app.config import Settings
from tests.inline import statements_per_step


def test_postgresql_statements_per_step_are_few_and_do_not_grow_with_history(
    pg_settings: Settings,
) -> None:
    counts = statements_per_step(pg_settings)
    assert len(counts) == 2 and counts[0] == counts[1], counts
    # Per step: the results' trials, one statement recording them, the published marks,
    # the pending instances, one statement recording the decisions: never one per trial.
    assert counts[0] <= 5, counts
    wide = statements_per_step(pg_settings, in_flight=30, name="wide")
    assert wide == counts, (counts, wide)  # 3x the trials per step, no more SQL
