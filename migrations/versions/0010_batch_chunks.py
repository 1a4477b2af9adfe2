"""batch chunks: a batch is stored as chunk rows, each carrying its items and their results

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 00:00:00

Until now every batch item was a jobs row of its own. Each such row becomes a chunk of one item:
its custom_id and params move into ``items`` and, if it succeeded, its result line into
``item_results``, so that old batches keep their counts and their results after the upgrade.
"""
from alembic import op
import orjson
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

PAGE = 1000


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch_op:
        batch_op.add_column(sa.Column('item_count', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('items', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('item_results', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('items_failed', sa.Integer(), nullable=True))
    _convert_items()
    with op.batch_alter_table('jobs') as batch_op:
        batch_op.drop_column('custom_id')


def _convert_items() -> None:
    """Turn each batch item row into a chunk of that one item."""
    bind = op.get_bind()
    jobs = sa.table(
        'jobs', sa.column('id', sa.Uuid), sa.column('batch_id', sa.Uuid),
        sa.column('custom_id', sa.String), sa.column('params', sa.JSON),
        sa.column('status', sa.String), sa.column('result', sa.JSON),
        sa.column('item_count', sa.Integer), sa.column('items', sa.LargeBinary),
        sa.column('item_results', sa.LargeBinary), sa.column('items_failed', sa.Integer),
    )
    while True:
        rows = bind.execute(
            sa.select(jobs.c.id, jobs.c.custom_id, jobs.c.params, jobs.c.status, jobs.c.result)
            .where(jobs.c.batch_id.is_not(None), jobs.c.item_count.is_(None))
            .limit(PAGE)
        ).all()
        if not rows:
            return
        for row in rows:
            done = row.status == 'succeeded'
            line = {'custom_id': row.custom_id, 'status': row.status, 'result': row.result}
            bind.execute(
                jobs.update().where(jobs.c.id == row.id).values(
                    item_count=1,
                    items=orjson.dumps([[row.custom_id, row.params or {}]]),
                    item_results=orjson.dumps(line) + b'\n' if done else None,
                    items_failed=0 if done else None,
                )
            )


def downgrade() -> None:
    # A chunk of many items cannot become item rows again: its batch keeps its counts only.
    with op.batch_alter_table('jobs') as batch_op:
        batch_op.add_column(sa.Column('custom_id', sa.String(200), nullable=True))
        batch_op.drop_column('items_failed')
        batch_op.drop_column('item_results')
        batch_op.drop_column('items')
        batch_op.drop_column('item_count')
