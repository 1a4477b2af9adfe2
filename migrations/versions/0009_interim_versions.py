"""interim versions: a training job registers a version per count of epochs trained

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 09:40:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# 0002 left the unique constraint on job_id unnamed: PostgreSQL named it itself, and on SQLite
# batch mode names the reflected one by this convention.
CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _job_id_constraint() -> str:
    pg = op.get_bind().dialect.name == "postgresql"
    return "model_versions_job_id_key" if pg else "uq_model_versions_job_id"


def upgrade() -> None:
    with op.batch_alter_table('model_versions', naming_convention=CONVENTION) as batch_op:
        batch_op.add_column(sa.Column('job_epochs', sa.Integer(), nullable=True))
        batch_op.drop_constraint(_job_id_constraint(), type_='unique')
    op.execute("UPDATE model_versions SET job_epochs = 0 WHERE job_id IS NOT NULL")
    with op.batch_alter_table('model_versions') as batch_op:
        batch_op.create_unique_constraint('uq_model_version_job_epochs', ['job_id', 'job_epochs'])


def downgrade() -> None:
    with op.batch_alter_table('model_versions', naming_convention=CONVENTION) as batch_op:
        batch_op.drop_constraint('uq_model_version_job_epochs', type_='unique')
        batch_op.create_unique_constraint(_job_id_constraint(), ['job_id'])
        batch_op.drop_column('job_epochs')
