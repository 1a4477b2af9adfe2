"""A tenant's caps: queued jobs (checked at submit) and running jobs (checked at claim).

The queued count is read at most once a second per process: a cap is a guard against one
tenant flooding the fleet, and checking it must not cost a count of its backlog per request.
"""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import func, select

from shared.errors import TooManyRequests
from shared.jobs.status import JobStatus
from shared.tables import Job, Tenant
from shared.types import Sessions

FRESH_S = 1.0  # how old a cached count or limit may be
RETRY_AFTER_S = 5

_counts: dict[uuid.UUID, tuple[int, int, float]] = {}  # tenant -> (queued, cap, read at)
_lock = threading.Lock()


def check_queued_cap(
    sessions: Sessions, tenant_id: uuid.UUID, adding: int, *, default_cap: int
) -> None:
    """Raise TooManyRequests if ``adding`` more jobs would put the tenant past its queued cap.

    ``default_cap`` applies to a tenant with no cap of its own (``tenant_max_queued``).
    """
    now = time.monotonic()
    with _lock:
        cached = _counts.get(tenant_id)
    if cached is None or now - cached[2] > FRESH_S:
        cached = (*_read(sessions, tenant_id, default_cap), now)
    queued, cap, read_at = cached
    if queued + adding > cap:
        raise TooManyRequests(
            f"the tenant has {queued} jobs queued; its cap is {cap}",
            retry_after_s=RETRY_AFTER_S,
            limit=cap,
        )
    with _lock:  # count this submission until the next read
        _counts[tenant_id] = (queued + adding, cap, read_at)


def _read(sessions: Sessions, tenant_id: uuid.UUID, default_cap: int) -> tuple[int, int]:
    with sessions() as session:
        # A chunk row counts its items.
        queued = session.scalar(
            select(func.sum(func.coalesce(Job.item_count, 1))).where(
                Job.tenant_id == tenant_id, Job.status == JobStatus.QUEUED
            )
        )
        cap = session.scalar(select(Tenant.max_queued).where(Tenant.id == tenant_id))
    return int(queued or 0), cap or default_cap
