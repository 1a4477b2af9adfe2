"""webhooks: where a job's or batch's events go, per-tenant secrets, deliveries and attempts

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 07:10:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

NOTIFY = sa.text("webhook IS NOT NULL AND (webhook_version IS NULL OR version > webhook_version)")
PENDING = sa.text("status = 'pending'")
NOTIFY_BATCH = sa.text("webhook IS NOT NULL AND (webhook_state IS NULL OR webhook_state <> 'ended')")


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('webhook_events', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('webhook_version', sa.Integer(), nullable=True))
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('webhook_events', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('webhook_state', sa.String(length=64), nullable=True))
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_secret', sa.String(length=128), nullable=True))
    op.create_index('ix_jobs_webhook_due', 'jobs', ['id'],
                    postgresql_where=NOTIFY, sqlite_where=NOTIFY)
    op.create_index('ix_batches_webhook_due', 'batches', ['id'],
                    postgresql_where=NOTIFY_BATCH, sqlite_where=NOTIFY_BATCH)
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=True),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('batch_id', sa.Uuid(), nullable=True),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.JSON(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_webhook_deliveries_job_id', 'webhook_deliveries', ['job_id'])
    op.create_index('ix_webhook_deliveries_batch_id', 'webhook_deliveries', ['batch_id'])
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['next_attempt_at'],
                    postgresql_where=PENDING, sqlite_where=PENDING)


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_batch_id', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_job_id', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_index('ix_batches_webhook_due', table_name='batches')
    op.drop_index('ix_jobs_webhook_due', table_name='jobs')
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('webhook_secret')
    for table, columns in (('batches', ('webhook_state', 'webhook_events', 'webhook')),
                           ('jobs', ('webhook_version', 'webhook_events', 'webhook'))):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.drop_column(column)
