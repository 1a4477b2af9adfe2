"""The pacer: a batch reaches the broker a few chunks at a time, as capacity frees up.

A batch's items wait as rows (``published_at`` NULL). ``fill`` stamps the next chunks of them,
in submit order, and publishes them, until ``batch_window_chunks`` chunks are in flight (in the
broker or running): the API fills a batch's window once it is stored, a worker each time it
finishes one of the batch's chunks, and the reconciler any batch with room (after a crash, say).
So the broker holds a bounded number of messages per batch, an interactive job never waits
behind a whole batch, and canceling a batch is an UPDATE of its rows: there is nothing in the
broker to clean up.

Due to publish, for the pacer as for the reconciler: queued, no message (``published_at`` NULL),
and ``available_at`` reached; a batch item also needs room in its batch's window.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from shared.db import utcnow
from shared.jobs.reads import due_now
from shared.jobs.status import JobStatus
from shared.tables import Batch, Job

if TYPE_CHECKING:
    from shared.services import Services


def fill(services: Services, batch_id: uuid.UUID, type_name: str) -> int:
    """Publish a batch's next chunks until its window is full; return how many items went.

    The API calls it once a batch is stored, a worker each time it finishes one of the batch's
    chunks, and the reconciler for every batch with items waiting. Each call counts what is in
    flight under a lock on the batch's row, so calls racing each other never overfill it.
    """
    ids = _take(services, batch_id)
    if ids:
        services.publisher.publish_chunks(ids, type_name, stamped=True)
    return len(ids)


def _take(services: Services, batch_id: uuid.UUID) -> list[uuid.UUID]:
    size = services.settings.batch_chunk_size
    window = services.settings.batch_window_chunks * size
    with services.store.sessions.kw["bind"].begin() as conn:
        # A write to the batch's row locks it: a PostgreSQL row lock, SQLite's write lock.
        conn.execute(update(Batch).where(Batch.id == batch_id).values(item_count=Batch.item_count))
        room = window - conn.scalar(_in_flight(batch_id))
        if room <= 0:
            return []
        pick = (
            select(Job.id)
            .where(Job.batch_id == batch_id, Job.solo.is_(False), due_now())
            .order_by(Job.batch_index)
            .limit(-(-room // size) * size)  # whole chunks
        )
        rows = conn.execute(
            update(Job)
            .where(Job.id.in_(pick.scalar_subquery()))
            .values(published_at=utcnow())
            .returning(Job.id, Job.batch_index)
        ).all()
    return [r.id for r in sorted(rows, key=lambda r: r.batch_index)]


def _in_flight(batch_id: uuid.UUID) -> Any:
    """Return a count of the batch's items with a message out: queued and published, or running."""
    return (
        select(func.count())
        .select_from(Job)
        .where(
            Job.batch_id == batch_id,
            Job.published_at.is_not(None),
            Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
        )
    )


def top_up(services: Services) -> int:
    """Fill the window of every batch that has items waiting; return how many items went."""
    waiting = (
        select(Job.batch_id)
        .where(Job.batch_id.is_not(None), Job.solo.is_(False), due_now())
        .distinct()
        .scalar_subquery()
    )
    with services.store.sessions() as session:
        batches = list(session.execute(select(Batch.id, Batch.type).where(Batch.id.in_(waiting))))
    return sum(fill(services, batch_id, type_name) for batch_id, type_name in batches)
