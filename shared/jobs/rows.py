"""Core SQL for the store's hot path: the jobs table, the claim statement, rows to insert.

Core statements skip the ORM's unit of work: each is one round trip, built and read back
without identity maps or instrumented objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal, select

from shared.db import utcnow
from shared.jobs import lifecycle
from shared.jobs.status import JobStatus
from shared.tables import Job, Tenant

JOBS = Job.__table__
_PEER = JOBS.alias("peer")


def claim_statement(
    job_ids: Sequence[uuid.UUID],
    token: str,
    *,
    lease_s: float,
    time_limits: Mapping[str, float],
    default_limit_s: float,
    solo: bool,
    running_cap: int,
) -> Any:
    """Return the claim's UPDATE (by primary key), as ``JobStore.claim`` runs it.

    An interactive job whose tenant already runs its cap of interactive jobs
    (``tenants.max_running``, else ``running_cap``) is left queued. Batch items are not held by
    it: the pacer's window bounds what a tenant's batches run, and a tenant's own bulk must never
    hold up its interactive work.
    """
    now = utcnow()
    deadline: Any = literal(now + timedelta(seconds=default_limit_s))
    if time_limits:
        deadline = case(
            {name: literal(now + timedelta(seconds=s)) for name, s in time_limits.items()},
            value=Job.type,
            else_=deadline,
        )
    return lifecycle.claim(
        job_ids,
        token,
        now,
        lease_s=lease_s,
        deadline=deadline,
        where=[
            Job.cancel_requested.is_(False),
            Job.solo.is_(solo),
            Job.available_at.is_(None) | (Job.available_at <= now),
            Job.tenant_id.is_(None)
            | Job.batch_id.is_not(None)
            | (_running() < _running_cap(running_cap)),
        ],
    ).returning(*JOBS.c)


def row_values(obj: Any) -> dict[str, Any]:
    """Return an unsaved ORM object's column values, for a Core INSERT."""
    table = type(obj).__table__
    return {c.name: getattr(obj, c.key) for c in table.columns if getattr(obj, c.key) is not None}


def new_row(job: Job, now: datetime | None = None) -> dict[str, Any]:
    """Fill a new job's defaults on the object (the API answers with it) and return its row."""
    job.id = job.id or uuid.uuid4()
    job.status = JobStatus.QUEUED
    job.created_at = job.created_at or now or utcnow()
    # Published right after the insert commits; a failed publish clears it, and the hot path
    # saves a second UPDATE.
    job.published_at = job.created_at
    for attr, default in (("version", 0), ("attempts", 0), ("priority", 0), ("params", {})):
        if getattr(job, attr) is None:
            setattr(job, attr, default)
    job.cancel_requested = bool(job.cancel_requested)
    job.solo = bool(job.solo)
    return row_values(job)


def _running() -> Any:
    """Return how many interactive jobs the claimed row's tenant runs now."""
    return (
        select(func.count())
        .select_from(_PEER)
        .where(
            _PEER.c.tenant_id == JOBS.c.tenant_id,
            _PEER.c.status == JobStatus.RUNNING,
            _PEER.c.batch_id.is_(None),
        )
        .scalar_subquery()
    )


def _running_cap(default: int) -> Any:
    """Return the claimed row's tenant's cap on running jobs."""
    own = select(Tenant.max_running).where(Tenant.id == JOBS.c.tenant_id).scalar_subquery()
    return func.coalesce(own, default)
