"""the pacer's indexes: batch items waiting as rows, and items in flight

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 05:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

WAITING = sa.text("status = 'queued' AND published_at IS NULL")
IN_FLIGHT = sa.text("published_at IS NOT NULL AND status IN ('queued', 'running')")


def upgrade() -> None:
    op.create_index(
        'ix_jobs_unpublished', 'jobs', ['batch_id', 'batch_index'],
        postgresql_where=WAITING, sqlite_where=WAITING,
    )
    op.create_index(
        'ix_jobs_in_flight', 'jobs', ['batch_id'],
        postgresql_where=IN_FLIGHT, sqlite_where=IN_FLIGHT,
    )


def downgrade() -> None:
    op.drop_index('ix_jobs_in_flight', table_name='jobs')
    op.drop_index('ix_jobs_unpublished', table_name='jobs')
