"""reader views for reports and the dashboard; trial events (lease expiries)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 18:30:00
"""

import importlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# trial_results gains arm_index (last, so PostgreSQL can replace the view in place). Its
# lookups are LEFT JOINs on primary keys (the foreign keys are NOT NULL, so the rows are the
# same): PostgreSQL then drops a join whose columns a query does not use.
TRIAL_RESULTS_VIEW = """
CREATE VIEW trial_results AS
SELECT
    c.name AS campaign,
    i.id AS instance_id,
    i.seq AS instance_seq,
    t.id AS trial_id,
    t.uuid AS trial_uuid,
    i.context AS context,
    a.value AS arm,
    a.name AS arm_name,
    t.policy_name AS policy,
    t.policy_version AS policy_version,
    t.propensity AS propensity,
    t.reason AS reason,
    t.state AS status,
    t.attempt AS attempt,
    r.cost AS cost,
    r.iterations AS iterations,
    r.converged AS converged,
    r.residual AS residual,
    r.latency_ms AS latency_ms,
    r.quality AS quality,
    r.device AS device,
    COALESCE(r.error, t.error) AS error,
    COALESCE(r.worker, t.worker) AS worker,
    t.created_at AS created_at,
    COALESCE(r.started_at, t.started_at) AS started_at,
    COALESCE(r.finished_at, t.finished_at) AS finished_at,
    t.arm_index AS arm_index
FROM trials t
JOIN campaigns c ON c.id = t.campaign_id
LEFT JOIN instances i ON i.id = t.instance_id
LEFT JOIN arms a ON a.id = t.arm_id
LEFT JOIN results r ON r.trial_id = t.id AND r.attempt = t.attempt
"""

# What `banditq report` and `banditq dashboard` read: views only, so the read-only role of
# `banditq db grant-reader` is enough. Aggregation happens in SQL over these.
VIEWS = {
    "campaign_overview": """
CREATE VIEW campaign_overview AS
SELECT c.name AS campaign, c.kind AS kind, c.policy AS policy,
       c.policy_config AS policy_config, c.context_features AS context_features,
       c.settings AS settings, c.status AS status, c.seed AS seed,
       c.max_in_flight AS max_in_flight, c.n_instances AS n_instances,
       c.n_updates AS n_updates, c.created_at AS created_at,
       (SELECT count(*) FROM arms a WHERE a.campaign_id = c.id) AS n_arms
FROM campaigns c
""",
    "campaign_arms": """
CREATE VIEW campaign_arms AS
SELECT c.name AS campaign, a."index" AS arm_index, a.name AS arm_name, a.value AS arm
FROM arms a JOIN campaigns c ON c.id = a.campaign_id
""",
    "result_attempts": """
CREATE VIEW result_attempts AS
SELECT c.name AS campaign, r.id AS result_id, r.trial_id AS trial_id,
       i.seq AS instance_seq, t.arm_index AS arm_index, r.attempt AS attempt,
       r.status AS status, r.cost AS cost, r.latency_ms AS latency_ms,
       r.quality AS quality, r.device AS device, r.worker AS worker, r.error AS error,
       r.applied AS applied, r.metrics AS metrics, r.started_at AS started_at,
       r.finished_at AS finished_at, r.recorded_at AS recorded_at
FROM results r
JOIN campaigns c ON c.id = r.campaign_id
LEFT JOIN trials t ON t.id = r.trial_id
LEFT JOIN instances i ON i.id = t.instance_id
""",
    "trial_event_log": """
CREATE VIEW trial_event_log AS
SELECT c.name AS campaign, e.trial_id AS trial_id, e.attempt AS attempt,
       e.event AS event, e.detail AS detail, e.at AS at
FROM trial_events e JOIN campaigns c ON c.id = e.campaign_id
""",
    "policy_latest": """
CREATE VIEW policy_latest AS
SELECT c.name AS campaign, s.policy_name AS policy_name,
       s.policy_version AS policy_version, s.n_updates AS n_updates,
       s.last_result_id AS last_result_id, s.state AS state, s.created_at AS created_at
FROM policy_snapshots s JOIN campaigns c ON c.id = s.campaign_id
WHERE s.id = (SELECT max(s2.id) FROM policy_snapshots s2 WHERE s2.campaign_id = s.campaign_id)
""",
}

# Full-information costs of `table` campaigns (a replay through the service), for exact
# counterfactuals; other kinds' specs (matrices) stay out of the readers' reach.
TABLE_COSTS = {
    "postgresql": "i.spec -> 'costs'",
    "sqlite": "json_extract(i.spec, '$.costs')",
}
TABLE_COSTS_VIEW = """
CREATE VIEW table_costs AS
SELECT c.name AS campaign, i.seq AS instance_seq, {expr} AS costs
FROM instances i JOIN campaigns c ON c.id = i.campaign_id
WHERE c.kind = 'table'
"""

NEW_VIEWS = (*VIEWS, "table_costs")


def upgrade() -> None:
    op.create_table('trial_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=30), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_trial_events_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trial_id'], ['trials.id'], name=op.f('fk_trial_events_trial_id_trials'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trial_events'))
    )
    op.create_index('ix_trial_events_campaign_at', 'trial_events', ['campaign_id', 'at'], unique=False)
    # Dashboards read results over time per campaign.
    op.create_index('ix_results_campaign_recorded', 'results', ['campaign_id', 'recorded_at'], unique=False)

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(TRIAL_RESULTS_VIEW.replace("CREATE VIEW", "CREATE OR REPLACE VIEW"))
    else:
        op.execute("DROP VIEW IF EXISTS trial_results")
        op.execute(TRIAL_RESULTS_VIEW)
    for sql in VIEWS.values():
        op.execute(sql)
    op.execute(TABLE_COSTS_VIEW.format(expr=TABLE_COSTS.get(dialect, TABLE_COSTS["sqlite"])))
    if dialect == "postgresql":
        # Roles made by `banditq db grant-reader` (they read trial_results) read the new views
        # too: an upgrade in place keeps analysts and dashboards working.
        roles = op.get_bind().execute(sa.text(
            "SELECT DISTINCT grantee FROM information_schema.role_table_grants "
            "WHERE table_name = 'trial_results' AND privilege_type = 'SELECT' "
            "AND grantee <> current_user AND grantee <> 'PUBLIC'"
        )).scalars().all()
        for role in roles:
            for view in NEW_VIEWS:
                op.execute(f'GRANT SELECT ON {view} TO "{role}"')


def downgrade() -> None:
    for view in reversed(NEW_VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.execute("DROP VIEW IF EXISTS trial_results")
    op.execute(importlib.import_module("migrations.versions.0001_initial_schema").TRIAL_RESULTS_VIEW)
    op.drop_index('ix_results_campaign_recorded', table_name='results')
    op.drop_index('ix_trial_events_campaign_at', table_name='trial_events')
    op.drop_table('trial_events')
