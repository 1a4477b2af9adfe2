"""Job states and every transition between them.

This module is the only writer of ``jobs.status``. Each transition is one conditional
``UPDATE … WHERE status = <expected>`` so duplicates, revived workers and racing workers can
never move a job twice. Running jobs are also guarded by ``worker_id``: the token of the claim
that owns the lease.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, func, insert, literal, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.db import utcnow
from shared.errors import Conflict, NotFound, StoreUnavailable
from shared.jobs.cache import StatusCache
from shared.jobs.cursor import decode_cursor, encode_cursor
from shared.jobs.schemas import JobPublic
from shared.jobs.status import TERMINAL, JobStatus
from shared.tables import Artifact, Batch, Job, JsonType


def error_doc(code: str, message: str) -> dict[str, str]:
    """Return the ``{code, message}`` document stored in ``jobs.error``."""
    return {"code": code, "message": message[:2000]}


class JobStore:
    """Creates, reads and transitions jobs; writes a snapshot to the status cache on each change."""

    def __init__(self, sessions: sessionmaker[Session], cache: StatusCache | None = None) -> None:
        self.sessions = sessions
        self.cache = cache

    # -- writing helpers -------------------------------------------------------------------
    def _update(self, job_id: uuid.UUID, where: Sequence[Any], **values: Any) -> Job | None:
        """Run one conditional UPDATE on a job; return the new row, or None if it did not match."""
        stmt = (
            update(Job)
            .where(Job.id == job_id, *where)
            .values(**values)
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        with self._session() as session:
            job = session.scalars(stmt).one_or_none()
            session.commit()
        if job is not None:
            self._snapshot(job)
        return job

    def _session(self) -> Session:
        try:
            return self.sessions()
        except OperationalError as exc:  # pragma: no cover - engine creation is lazy
            raise StoreUnavailable(str(exc)) from exc

    def _snapshot(self, *jobs: Job) -> None:
        if self.cache is not None and jobs:
            self.cache.put_many({str(job.id): to_public(job) for job in jobs})

    # -- creating and reading --------------------------------------------------------------
    def create(self, jobs: Sequence[Job]) -> list[Job]:
        """Insert queued jobs in one transaction and commit before anything is published."""
        now = utcnow()
        for job in jobs:
            job.status = JobStatus.QUEUED
            job.created_at = job.created_at or now
            # Published right after this commit; if that fails, the reconciler finds it after
            # republish_after_s, and the hot path saves a second UPDATE.
            job.published_at = job.created_at
        try:
            with self.sessions() as session:
                session.add_all(jobs)
                session.commit()
        except OperationalError as exc:
            raise StoreUnavailable("the job store is unavailable") from exc
        self._snapshot(*jobs)
        return list(jobs)

    def create_batch(self, batch: Batch, rows: list[dict[str, Any]]) -> None:
        """Insert a batch and all its queued jobs in one transaction (a bulk INSERT)."""
        for row in rows:
            row["status"] = JobStatus.QUEUED
        try:
            with self.sessions() as session:
                session.add(batch)
                session.flush()
                session.execute(insert(Job), rows)
                session.commit()
        except OperationalError as exc:
            raise StoreUnavailable("the job store is unavailable") from exc

    def cancel_batch(self, batch_id: uuid.UUID) -> None:
        """Cancel a batch's queued jobs now and flag its running ones to stop."""
        now, canceled = utcnow(), error_doc("canceled", "canceled by request")
        with self.sessions() as session:
            batch = session.get(Batch, batch_id)
            if batch is None:
                raise NotFound("batch not found")
            batch.cancel_requested = True
            changed = list(
                session.scalars(
                    update(Job)
                    .where(Job.batch_id == batch_id, Job.status == JobStatus.QUEUED)
                    .values(
                        status=JobStatus.CANCELED,
                        cancel_requested=True,
                        finished_at=now,
                        error=canceled,
                    )
                    .returning(Job.id)
                    .execution_options(synchronize_session=False)
                )
            )
            changed += session.scalars(
                update(Job)
                .where(Job.batch_id == batch_id, Job.status == JobStatus.RUNNING)
                .values(cancel_requested=True)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
            session.commit()
        if self.cache is not None:
            self.cache.forget([str(i) for i in changed])  # readers fall back to the database

    def mark_published(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Record when queued jobs were last handed to the broker."""
        now = utcnow()
        with self.sessions() as session:
            for start in range(0, len(job_ids), 5000):  # stay under bind-parameter limits
                chunk = job_ids[start : start + 5000]
                session.execute(
                    update(Job)
                    .where(Job.id.in_(chunk), Job.status == JobStatus.QUEUED)
                    .values(published_at=now)
                    .execution_options(synchronize_session=False)
                )
            session.commit()

    def get(self, job_id: uuid.UUID) -> Job | None:
        """Return the job row from the database."""
        with self.sessions() as session:
            return session.get(Job, job_id)

    def get_public(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        """Return the client view of a job: the cached snapshot first, then the database."""
        if self.cache is not None and (hit := self.cache.get(str(job_id))):
            return hit
        job = self.get(job_id)
        return to_public(job) if job else None

    def wait_public(self, job_id: uuid.UUID, wait_s: float) -> dict[str, Any] | None:
        """Return the job once it is terminal or ``wait_s`` has passed (a long poll).

        With Redis, the wait listens to the job's event channel; without it, the row is re-read
        every tenth of a second.
        """
        deadline = time.monotonic() + wait_s
        if self.cache is not None:
            return self.cache.wait(str(job_id), deadline, lambda: self.get_public(job_id))
        while True:
            job = self.get_public(job_id)
            if job is None or job["status"] in TERMINAL or time.monotonic() >= deadline:
                return job
            time.sleep(0.1)

    def list(
        self, *, status: str | None, type_: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Job], str | None]:
        """Return one page of jobs, newest first, and the cursor of the next page."""
        stmt = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
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

    # -- transitions a worker makes --------------------------------------------------------
    def claim(self, job_ids: Sequence[uuid.UUID], token: str, lease_s: float) -> list[Job]:
        """Move jobs to ``running`` under one new lease; return those this worker may run.

        A queued job is claimed; so is a running job whose lease expired (its worker died).
        A finished job, a running job under a live lease, or one out of attempts is not.
        """
        now = utcnow()
        claimable = or_(
            Job.status == JobStatus.QUEUED,
            and_(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now),
        )
        stmt = (
            update(Job)
            .where(
                Job.id.in_(job_ids),
                claimable,
                Job.cancel_requested.is_(False),
                Job.attempts < Job.max_attempts,
            )
            .values(
                status=JobStatus.RUNNING,
                attempts=Job.attempts + 1,
                worker_id=token,
                started_at=now,
                lease_expires_at=now + timedelta(seconds=lease_s),
                error=None,
            )
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        with self._session() as session:
            jobs = list(session.scalars(stmt))
            session.commit()
        self._snapshot(*jobs)
        order = {job_id: i for i, job_id in enumerate(job_ids)}
        return sorted(jobs, key=lambda j: order[j.id])

    def heartbeat(self, token: str, lease_s: float) -> dict[uuid.UUID, bool]:
        """Extend the lease of every job a claim still owns; map each to its cancel flag."""
        stmt = (
            update(Job)
            .where(Job.status == JobStatus.RUNNING, Job.worker_id == token)
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
            .returning(Job.id, Job.cancel_requested)
            .execution_options(synchronize_session=False)
        )
        with self._session() as session:
            owned = {job_id: bool(flag) for job_id, flag in session.execute(stmt)}
            session.commit()
        return owned

    def set_progress(self, job_id: uuid.UUID, token: str, progress: dict[str, Any]) -> Job | None:
        """Record progress of a running job; None when the lease was lost."""
        return self._update(
            job_id, [Job.status == JobStatus.RUNNING, Job.worker_id == token], progress=progress
        )

    def succeed_many(
        self, token: str, results: dict[uuid.UUID, dict[str, Any]], artifacts: Sequence[Artifact]
    ) -> list[Job]:
        """Finish many running jobs of one claim in one transaction, with their artifacts.

        One guarded UPDATE covers them all; artifacts are recorded only for the jobs it matched,
        so a job whose lease was taken over leaves no rows behind.
        """
        if not results:
            return []
        stmt = (
            update(Job)
            .where(
                Job.id.in_(list(results)), Job.status == JobStatus.RUNNING, Job.worker_id == token
            )
            .values(
                status=JobStatus.SUCCEEDED,
                finished_at=utcnow(),
                lease_expires_at=None,
                result=case({k: literal(v, JsonType) for k, v in results.items()}, value=Job.id),
            )
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        with self._session() as session:
            done = list(session.scalars(stmt))
            ids = {job.id for job in done}
            session.add_all([a for a in artifacts if a.job_id in ids])
            session.commit()
        self._snapshot(*done)
        return done

    def fail(self, job_id: uuid.UUID, token: str, code: str, message: str) -> Job | None:
        """Finish a running job as failed."""
        return self._finish(job_id, token, JobStatus.FAILED, error=error_doc(code, message))

    def cancel_running(self, job_id: uuid.UUID, token: str) -> Job | None:
        """Finish a running job that stopped because its cancel flag was set."""
        return self._finish(
            job_id, token, JobStatus.CANCELED, error=error_doc("canceled", "canceled by request")
        )

    def retry(self, job_id: uuid.UUID, token: str, code: str, message: str) -> Job | None:
        """Requeue a running job after a transient error, or fail it when out of attempts."""
        back = self._update(
            job_id,
            [
                Job.status == JobStatus.RUNNING,
                Job.worker_id == token,
                Job.attempts < Job.max_attempts,
                Job.cancel_requested.is_(False),
            ],
            status=JobStatus.QUEUED,
            worker_id=None,
            lease_expires_at=None,
            error=error_doc(code, message),
            published_at=utcnow(),
        )
        return back or self.fail(job_id, token, code, message)

    def _finish(
        self, job_id: uuid.UUID, token: str, status: JobStatus, **values: Any
    ) -> Job | None:
        return self._update(
            job_id,
            [Job.status == JobStatus.RUNNING, Job.worker_id == token],
            status=status,
            finished_at=utcnow(),
            lease_expires_at=None,
            **values,
        )

    # -- transitions a client makes --------------------------------------------------------
    def request_cancel(self, job_id: uuid.UUID) -> Job:
        """Cancel a queued job now, or flag a running one to stop; Conflict if it already ended."""
        now = utcnow()
        job = self._update(
            job_id,
            [Job.status == JobStatus.QUEUED],
            status=JobStatus.CANCELED,
            cancel_requested=True,
            finished_at=now,
            error=error_doc("canceled", "canceled by request"),
        )
        job = job or self._update(job_id, [Job.status == JobStatus.RUNNING], cancel_requested=True)
        if job is not None:
            return job
        current = self.get(job_id)
        if current is None:
            raise NotFound("job not found")
        raise Conflict(f"job is already {current.status}", job_status=current.status)

    # -- transitions the reconciler makes --------------------------------------------------
    def stale_queued(self, older_than_s: float, limit: int = 1000) -> list[Job]:
        """Return queued jobs not published within ``older_than_s`` seconds."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        stmt = (
            select(Job)
            .where(Job.status == JobStatus.QUEUED)
            .where(func.coalesce(Job.published_at, Job.created_at) < cutoff)
            .order_by(Job.priority.desc(), Job.created_at)
            .limit(limit)
        )
        with self.sessions() as session:
            return list(session.scalars(stmt))

    def expired_leases(self, limit: int = 1000) -> list[Job]:
        """Return running jobs whose lease ran out: their worker is gone."""
        stmt = (
            select(Job)
            .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < utcnow())
            .limit(limit)
        )
        with self.sessions() as session:
            return list(session.scalars(stmt))

    def rescue(self, job: Job) -> Job | None:
        """Requeue, fail or cancel one job whose lease expired; None if it moved meanwhile."""
        guard = [
            Job.status == JobStatus.RUNNING,
            Job.worker_id == job.worker_id,
            Job.lease_expires_at < utcnow(),
        ]
        done = {"finished_at": utcnow(), "lease_expires_at": None}
        if job.cancel_requested:
            return self._update(
                job.id,
                guard,
                status=JobStatus.CANCELED,
                **done,
                error=error_doc("canceled", "canceled by request"),
            )
        if job.attempts >= job.max_attempts:
            message = f"the worker was lost {job.attempts} times"
            return self._update(
                job.id,
                guard,
                status=JobStatus.FAILED,
                **done,
                error=error_doc("worker_lost", message),
            )
        return self._update(
            job.id,
            guard,
            status=JobStatus.QUEUED,
            worker_id=None,
            lease_expires_at=None,
            published_at=None,
        )


def to_public(job: Job) -> dict[str, Any]:
    """Return the JSON-ready client view of a job row."""
    return JobPublic.model_validate(job).model_dump(mode="json")
