"""tenants, API keys, idempotent responses, and the owner of every resource

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 06:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

OWNED = ('jobs', 'artifacts', 'models', 'datasets', 'batches')
WAITING = sa.text("batch_id IS NOT NULL AND status = 'queued' AND published_at IS NULL")
IN_FLIGHT = sa.text(
    "batch_id IS NOT NULL AND published_at IS NOT NULL AND status IN ('queued', 'running')"
)


def upgrade() -> None:
    op.create_table('tenants',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('max_running', sa.Integer(), nullable=True),
    sa.Column('max_queued', sa.Integer(), nullable=True),
    sa.Column('rate_limit', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('api_keys',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash')
    )
    op.create_index('ix_api_keys_tenant_id', 'api_keys', ['tenant_id'])
    op.create_table('idempotency_keys',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'key')
    )
    op.create_index('ix_idempotency_keys_created_at', 'idempotency_keys', ['created_at'])
    for table in OWNED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('tenant_id', sa.Uuid(), nullable=True))
            batch_op.create_foreign_key(f'fk_{table}_tenant', 'tenants', ['tenant_id'], ['id'])
    with op.batch_alter_table('models', schema=None) as batch_op:
        # The models that existed before tenants were the system's defaults: shared.
        batch_op.add_column(sa.Column('shared', sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_tenant_status', ['tenant_id', 'status'])
        batch_op.create_index('ix_jobs_tenant_created', ['tenant_id', 'created_at', 'id'])
    # The pacer now fills a window per tenant, not per batch.
    op.drop_index('ix_jobs_unpublished', table_name='jobs')
    op.drop_index('ix_jobs_in_flight', table_name='jobs')
    op.create_index(
        'ix_jobs_unpublished', 'jobs', ['tenant_id', 'created_at', 'batch_index'],
        postgresql_where=WAITING, sqlite_where=WAITING,
    )
    op.create_index('ix_jobs_in_flight', 'jobs', ['tenant_id'], postgresql_where=IN_FLIGHT, sqlite_where=IN_FLIGHT)


def downgrade() -> None:
    op.drop_index('ix_jobs_in_flight', table_name='jobs')
    op.drop_index('ix_jobs_unpublished', table_name='jobs')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_tenant_created')
        batch_op.drop_index('ix_jobs_tenant_status')
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('shared')
    for table in OWNED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f'fk_{table}_tenant', type_='foreignkey')
            batch_op.drop_column('tenant_id')
    op.drop_index('ix_idempotency_keys_created_at', table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
    op.drop_index('ix_api_keys_tenant_id', table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_table('tenants')
    waiting = sa.text("status = 'queued' AND published_at IS NULL")
    in_flight = sa.text("published_at IS NOT NULL AND status IN ('queued', 'running')")
    op.create_index('ix_jobs_unpublished', 'jobs', ['batch_id', 'batch_index'],
                    postgresql_where=waiting, sqlite_where=waiting)
    op.create_index('ix_jobs_in_flight', 'jobs', ['batch_id'],
                    postgresql_where=in_flight, sqlite_where=in_flight)
