"""retention: when a job's result, a batch or an artifact's file expired; per-tenant retention

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 07:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

EXPIRABLE = sa.text("batch_id IS NULL AND expired_at IS NULL AND finished_at IS NOT NULL")


def upgrade() -> None:
    for table in ('jobs', 'batches', 'artifacts'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_days', sa.Float(), nullable=True))
    op.create_index('ix_jobs_expiry', 'jobs', ['tenant_id', 'finished_at'],
                    postgresql_where=EXPIRABLE, sqlite_where=EXPIRABLE)


def downgrade() -> None:
    op.drop_index('ix_jobs_expiry', table_name='jobs')
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('retention_days')
    for table in ('jobs', 'batches', 'artifacts'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('expired_at')
