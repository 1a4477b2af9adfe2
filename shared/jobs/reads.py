"""Reading jobs: one job, pages of jobs, and the sets the reconciler works on."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import utcnow
from shared.jobs.cache import StatusCache
from shared.jobs.cursor import decode_cursor, encode_cursor
from shared.jobs.schemas import JobPublic
from shared.jobs.status import JobStatus
from shared.tables import Job


def to_public(job: Job) -> dict[str, Any]:
    """Return the JSON-ready client view of a job row."""
    return JobPublic.model_validate(job).model_dump(mode="json")


def due_now() -> ColumnElement[bool]:
    """Return the condition of a job due to be published now (the pacer and reconciler's)."""
    now = utcnow()
    return (
        (Job.status == JobStatus.QUEUED)
        & Job.published_at.is_(None)
        & or_(Job.available_at.is_(None), Job.available_at <= now)
    )


def snapshot(job: Job) -> dict[str, Any]:
    """Return the client view of a job with its row version, as the status cache stores it."""
    return {**to_public(job), "version": job.version}


class JobReads:
    """The read side of the job store."""

    def __init__(self, sessions: sessionmaker[Session], cache: StatusCache | None = None) -> None:
        self.sessions = sessions
        self.cache = cache
        # One statement is its own transaction: no BEGIN and COMMIT round trips around it.
        self.autocommit = sessions.kw["bind"].execution_options(isolation_level="AUTOCOMMIT")

    def get(self, job_id: uuid.UUID) -> Job | None:
        """Return the job row from the database."""
        with self.sessions() as session:
            return session.get(Job, job_id)

    def get_snapshot(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        """Return the client view of a job with its version: the cache first, then the database."""
        if self.cache is not None and (hit := self.cache.get(str(job_id))):
            return hit
        job = self.get(job_id)
        return snapshot(job) if job else None

    def get_public(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        """Return the client view of a job: the cached snapshot first, then the database."""
        found = self.get_snapshot(job_id)
        if found is not None:
            found.pop("version", None)
        return found

    def versions(self, job_ids: list[str]) -> dict[str, int]:
        """Return the row version of each existing job, for pollers waiting on changes."""
        ids = [uuid.UUID(i) for i in job_ids]
        with self.sessions() as session:
            rows = session.execute(select(Job.id, Job.version).where(Job.id.in_(ids)))
            return {str(job_id): version for job_id, version in rows}

    def page(
        self,
        *,
        tenant_id: uuid.UUID | None,
        status: str | None,
        type_: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Job], str | None]:
        """Return one page of a tenant's jobs, newest first, and the cursor of the next page.

        A batch's chunks are not jobs to a client: their batch lists them.
        """
        stmt = (
            select(Job)
            .where(Job.tenant_id == tenant_id, Job.batch_id.is_(None))
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(limit + 1)
        )
        if status:
            stmt = stmt.where(Job.status == status)
        if type_:
            stmt = stmt.where(Job.type == type_)
        if cursor:
            at, last_id = decode_cursor(cursor)
            stmt = stmt.where(
                or_(Job.created_at < at, and_(Job.created_at == at, Job.id < last_id))
            )
        with self.sessions() as session:
            rows = list(session.scalars(stmt))
        page, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
        return page, next_cursor

    def types_of(self, job_ids: Sequence[uuid.UUID]) -> set[str]:
        """Return the job types among these jobs."""
        with self.sessions() as session:
            return set(session.scalars(select(Job.type).where(Job.id.in_(job_ids)).distinct()))

    def unclaimed(self, job_ids: list[uuid.UUID]) -> list[Any]:
        """Return (id, solo) of the jobs among these that a claim left queued though due."""
        stmt = select(Job.id, Job.solo).where(
            Job.id.in_(job_ids),
            Job.status == JobStatus.QUEUED,
            Job.cancel_requested.is_(False),
            or_(Job.available_at.is_(None), Job.available_at <= utcnow()),
        )
        with self.sessions() as session:
            return list(session.execute(stmt))

    # -- what the reconciler works on ------------------------------------------------------
    def due_unpublished(self, limit: int = 1000) -> list[Job]:
        """Return due jobs that are not the pacer's: all but batch items that travel in chunks."""
        stmt = (
            select(Job)
            .where(due_now(), or_(Job.batch_id.is_(None), Job.solo.is_(True)))
            .order_by(Job.priority.desc(), Job.created_at)
            .limit(limit)
        )
        with self.sessions() as session:
            return list(session.scalars(stmt))

    def published_before(self, cutoff: datetime, limit: int = 1000) -> list[Job]:
        """Return queued jobs whose message went to the broker before ``cutoff``.

        A job whose message a live worker holds (waiting at its solo gate) is left out.
        """
        stmt = (
            select(Job)
            .where(Job.status == JobStatus.QUEUED, Job.published_at < cutoff)
            .where(or_(Job.lease_expires_at.is_(None), Job.lease_expires_at <= utcnow()))
            .order_by(Job.published_at)
            .limit(limit)
        )
        with self.sessions() as session:
            return list(session.scalars(stmt))

    def expired_leases(self, limit: int = 1000) -> list[Job]:
        """Return running jobs whose lease ran out: their worker is gone or cut off."""
        stmt = (
            select(Job)
            .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < utcnow())
            .limit(limit)
        )
        with self.sessions() as session:
            return list(session.scalars(stmt))

    def running_per_process(self, prefixes: set[str]) -> dict[str, int]:
        """Return how many jobs run under each worker process (claim tokens share its prefix)."""
        counts: dict[str, int] = {}
        with self.sessions() as session:
            for prefix in prefixes:
                counts[prefix] = session.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(
                        Job.status == JobStatus.RUNNING,
                        Job.worker_id.startswith(prefix, autoescape=True),
                    )
                )
        return counts


def cutoff(seconds: float) -> datetime:
    """Return the moment ``seconds`` ago."""
    return utcnow() - timedelta(seconds=seconds)
