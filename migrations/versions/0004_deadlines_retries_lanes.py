"""deadlines, retry backoff, per-attempt errors, solo reruns, snapshot versions, lanes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 03:10:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('errors', JSON, nullable=True))
        batch_op.add_column(sa.Column('available_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('solo', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table('lanes',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('consumed_through', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('lanes')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('solo')
        batch_op.drop_column('deadline_at')
        batch_op.drop_column('available_at')
        batch_op.drop_column('errors')
        batch_op.drop_column('version')
