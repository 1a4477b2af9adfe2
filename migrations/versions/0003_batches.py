"""batches

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 22:13:15.054933
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('batches',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=True),
    sa.Column('item_count', sa.Integer(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch_index', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('custom_id', sa.String(length=200), nullable=True))
        batch_op.drop_index(batch_op.f('ix_jobs_batch'))
        batch_op.create_index('ix_jobs_batch', ['batch_id', 'batch_index'], unique=False)




def downgrade() -> None:
    
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_batch')
        batch_op.create_index(batch_op.f('ix_jobs_batch'), ['batch_id'], unique=False)
        batch_op.drop_column('custom_id')
        batch_op.drop_column('batch_index')

    op.drop_table('batches')

