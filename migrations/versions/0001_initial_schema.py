"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-12-01 08:02:36.429975
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The view users query with plain SQL; one row per trial, the result of its current attempt.
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
    COALESCE(r.finished_at, t.finished_at) AS finished_at
FROM trials t
JOIN instances i ON i.id = t.instance_id
JOIN campaigns c ON c.id = t.campaign_id
JOIN arms a ON a.id = t.arm_id
LEFT JOIN results r ON r.trial_id = t.id AND r.attempt = t.attempt
"""


def upgrade() -> None:
    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('policy', sa.String(length=50), nullable=False),
    sa.Column('policy_config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('context_features', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('max_in_flight', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('n_instances', sa.Integer(), nullable=False),
    sa.Column('n_updates', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
    sa.UniqueConstraint('name', name=op.f('uq_campaigns_name'))
    )
    op.create_table('arms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('value', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_arms_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_arms')),
    sa.UniqueConstraint('campaign_id', 'index', name=op.f('uq_arms_campaign_id_index'))
    )
    op.create_table('instances',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('context', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('spec', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_instances_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instances')),
    sa.UniqueConstraint('campaign_id', 'seq', name=op.f('uq_instances_campaign_id_seq'))
    )
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.create_index('ix_instances_pending', ['campaign_id', 'status', 'seq'], unique=False)

    op.create_table('policy_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('policy_name', sa.String(length=50), nullable=False),
    sa.Column('policy_version', sa.String(length=50), nullable=False),
    sa.Column('n_updates', sa.Integer(), nullable=False),
    sa.Column('last_result_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_policy_snapshots_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_snapshots'))
    )
    with op.batch_alter_table('policy_snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_policy_snapshots_latest', ['campaign_id', 'id'], unique=False)

    op.create_table('trials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('arm_id', sa.Integer(), nullable=False),
    sa.Column('arm_index', sa.Integer(), nullable=False),
    sa.Column('propensity', sa.Float(), nullable=False),
    sa.Column('policy_name', sa.String(length=50), nullable=False),
    sa.Column('policy_version', sa.String(length=50), nullable=False),
    sa.Column('reason', sa.String(length=50), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['arm_id'], ['arms.id'], name=op.f('fk_trials_arm_id_arms'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_trials_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_trials_instance_id_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trials')),
    sa.UniqueConstraint('uuid', name=op.f('uq_trials_uuid'))
    )
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trials_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index('ix_trials_open', ['campaign_id', 'state'], unique=False)
        batch_op.create_index('ix_trials_outbox', ['state', 'published_at'], unique=False)

    op.create_table('results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('cost', sa.Float(), nullable=True),
    sa.Column('iterations', sa.Integer(), nullable=True),
    sa.Column('converged', sa.Boolean(), nullable=True),
    sa.Column('residual', sa.Float(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('quality', sa.Float(), nullable=True),
    sa.Column('device', sa.String(length=50), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('outputs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('applied', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_results_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trial_id'], ['trials.id'], name=op.f('fk_results_trial_id_trials'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_results')),
    sa.UniqueConstraint('trial_id', 'attempt', name=op.f('uq_results_trial_id_attempt'))
    )
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_results_campaign_id'), ['campaign_id'], unique=False)


    op.execute(TRIAL_RESULTS_VIEW)

def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS trial_results")
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_results_campaign_id'))

    op.drop_table('results')
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_index('ix_trials_outbox')
        batch_op.drop_index('ix_trials_open')
        batch_op.drop_index(batch_op.f('ix_trials_instance_id'))

    op.drop_table('trials')
    with op.batch_alter_table('policy_snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_policy_snapshots_latest')

    op.drop_table('policy_snapshots')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_index('ix_instances_pending')

    op.drop_table('instances')
    op.drop_table('arms')
    op.drop_table('campaigns')
