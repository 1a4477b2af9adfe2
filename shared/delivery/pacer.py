"""The pacer: batches reach the broker a few chunks at a time, shared fairly between tenants.

A batch's chunks wait as rows (``published_at`` NULL). ``fill`` stamps the next chunks of a
tenant's oldest batch, in submit order, and publishes them, until the tenant has its window in
flight (in the broker or running): ``batch_window_items`` items times its weight, counted in
items (a split chunk is smaller than the others) so that shares are fair in work. The API
fills a tenant's window when it stores a batch, a worker each time it finishes a chunk, and the
reconciler every tenant with room (after a crash, say). The broker delivers the batch lane in
order, so tenants with equal windows get equal shares of the workers, whatever the size of
their backlogs; the broker holds a bounded number of messages; an interactive job never waits
behind a whole batch; and canceling a batch is an UPDATE of its rows, with nothing in the
broker to clean up.

Due to publish, for the pacer as for the reconciler: queued, no message (``published_at``
NULL), and ``available_at`` reached; a batch item also needs room in its tenant's window.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, func, select, update

from shared.config import Settings
from shared.db import utcnow
from shared.jobs.reads import due_now
from shared.jobs.status import JobStatus
from shared.tables import Job, Tenant
from shared.types import Publisher, Sessions


def fill(
    sessions: Sessions, publisher: Publisher, settings: Settings, tenant_id: uuid.UUID | None
) -> int:
    """Publish chunks of a tenant's batches until its window is full; return items published.

    Calls racing each other (two workers finishing chunks) count what is in flight under a lock
    on the tenant's row, so they never overfill the window.
    """
    with sessions.kw["bind"].begin() as conn:
        chunks = _take(conn, settings, tenant_id)
    if chunks:  # after the commit: a message never names an unstamped row
        publisher.publish(chunks, stamped=True)
    return sum(c.item_count for c in chunks)


def _take(conn: Connection, settings: Settings, tenant_id: uuid.UUID | None) -> list[Any]:
    weight = _lock(conn, tenant_id)
    room = max(round(settings.batch_window_items * weight), 1)
    room -= conn.scalar(_in_flight(tenant_id)) or 0
    taken: list[Any] = []
    while room > 0:
        oldest = conn.execute(
            select(Job.batch_id)
            .where(_waiting(tenant_id))
            .order_by(Job.created_at, Job.batch_index)
            .limit(1)
        ).scalar()
        if oldest is None:
            break
        chunks = _stamp(conn, tenant_id, oldest, room, settings.batch_chunk_size)
        taken += chunks
        room -= sum(c.item_count for c in chunks)
    return taken


def _lock(conn: Connection, tenant_id: uuid.UUID | None) -> float:
    """Lock the tenant's row (a PostgreSQL row lock; SQLite's write lock) and return its weight."""
    if tenant_id is None:  # the system's own batches: SQLite's write lock, or none is needed
        return 1.0
    weight = conn.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(weight=Tenant.weight)
        .returning(Tenant.weight)
    ).scalar()
    return weight or 1.0


def _waiting(tenant_id: uuid.UUID | None) -> Any:
    return (
        (Job.tenant_id == tenant_id if tenant_id else Job.tenant_id.is_(None))
        & Job.batch_id.is_not(None)
        & Job.solo.is_(False)
        & due_now()
    )


def _stamp(
    conn: Connection, tenant_id: uuid.UUID | None, batch_id: uuid.UUID, room: int, size: int
) -> list[Any]:
    """Stamp a batch's next waiting chunks, in order, while the items before each fit ``room``.

    The first chunk always goes: a window smaller than a chunk still makes progress.
    """
    # The next chunks first (a full window of whole ones, fewer if some were split), then the
    # running sum over those alone: a window function runs before its own query's LIMIT.
    nearest = (
        select(Job.id, Job.item_count, Job.batch_index)
        .where(_waiting(tenant_id), Job.batch_id == batch_id)
        .order_by(Job.batch_index)
        .limit(-(-room // size))
        .subquery()
    )
    before = func.sum(nearest.c.item_count).over(order_by=nearest.c.batch_index)
    ahead = select(nearest.c.id, (before - nearest.c.item_count).label("before")).subquery()
    pick = select(ahead.c.id).where(ahead.c.before < room)
    rows = conn.execute(
        update(Job)
        .where(Job.id.in_(pick.scalar_subquery()))
        .values(published_at=utcnow())
        .returning(Job.id, Job.type, Job.batch_id, Job.batch_index, Job.item_count, Job.solo)
    ).all()
    return sorted(rows, key=lambda r: r.batch_index)


def _in_flight(tenant_id: uuid.UUID | None) -> Any:
    """Count a tenant's batch items with a message out: queued and published, or running."""
    return select(func.sum(Job.item_count)).where(
        Job.tenant_id == tenant_id if tenant_id else Job.tenant_id.is_(None),
        Job.batch_id.is_not(None),
        Job.published_at.is_not(None),
        Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
    )


def top_up(sessions: Sessions, publisher: Publisher, settings: Settings) -> int:
    """Fill the window of every tenant with batch items waiting; return items published."""
    waiting = (
        select(Job.tenant_id)
        .where(Job.batch_id.is_not(None), Job.solo.is_(False), due_now())
        .distinct()
    )
    with sessions() as session:
        tenants = list(session.scalars(waiting))
    return sum(fill(sessions, publisher, settings, tenant_id) for tenant_id in tenants)
