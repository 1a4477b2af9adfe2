"""Every write to a job's status, each one of ``shared.jobs.lifecycle``'s transitions.

The store runs the guarded statements the lifecycle builds, and snapshots what they return into
the status cache. Its other writes leave the status alone: the lease renewal, progress, the hold
and deferral of a message. Elsewhere only bookkeeping columns of jobs are written, never the
status: ``published_at`` by the pacer, ``webhook_version`` by the webhook dispatcher, and
``expired_at`` with the dropped result by retention.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Delete, Update, delete, exists, insert, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import OperationalError

from shared.db import utcnow
from shared.errors import NotFound, StoreUnavailable
from shared.jobs import chunks, lifecycle
from shared.jobs.lifecycle import Event, Expired, Happened
from shared.jobs.reads import JobReads, snapshot
from shared.jobs.rows import JOBS, claim_statement, new_row, row_values
from shared.jobs.status import JobStatus
from shared.tables import Artifact, Batch, Dataset, Job, ModelVersion
from shared.tenants.idempotency import keep
from shared.types import Claim

# A batch's chunk rows go in multi-row INSERTs of at most this many rows or item bytes.
INSERT_ROWS, INSERT_BYTES = 64, 8 * 1024 * 1024


class JobStore(JobReads):
    """Creates and transitions jobs; each change goes to the status cache as a snapshot."""

    # -- helpers ---------------------------------------------------------------------------
    def _run(self, stmt: Update) -> Row | None:
        """Run one conditional UPDATE of a job; return the new row, or None if it did not match."""
        with self.autocommit.connect() as conn:
            job = conn.execute(stmt.returning(*JOBS.c)).one_or_none()
        if job is not None:
            self._snapshot(job)
        return job

    def forget(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Drop the jobs' cached snapshots (their rows changed behind the cache: retention)."""
        if self.cache is not None:
            self.cache.forget(str(i) for i in job_ids)

    def _snapshot(self, *jobs: Job) -> None:
        # Batch items are read through their batch; nobody waits on one alone.
        if self.cache is not None:
            self.cache.put_many(snapshot(job) for job in jobs if job.batch_id is None)

    # -- creating --------------------------------------------------------------------------
    def create(
        self, jobs: Sequence[Job], *, answer: Callable[[], Claim | None] | None = None
    ) -> list[Job]:
        """Insert queued jobs (their defaults filled here, once), committed before any publish.

        ``answer()``, called once the jobs have their ids, returns the idempotency claim with
        the response to keep; it is stored in the same transaction, so of two requests with one
        key only one creates anything (the other gets AlreadyStored).
        """
        now = utcnow()
        rows = [new_row(job, now) for job in jobs]
        claim = answer() if answer else None
        try:
            if claim is None:
                with self.autocommit.connect() as conn:  # one statement: its own transaction
                    conn.execute(insert(JOBS), rows)
            else:
                with self.sessions.kw["bind"].begin() as conn:
                    keep(conn, claim)
                    conn.execute(insert(JOBS), rows)
        except OperationalError as exc:
            raise StoreUnavailable("the job store is unavailable") from exc
        self._snapshot(*jobs)
        return list(jobs)

    def create_batch(
        self,
        batch: Batch,
        chunks: Iterable[dict[str, Any]],
        *,
        answer: Callable[[], Claim | None] | None = None,
    ) -> None:
        """Insert a batch and its queued chunk rows in one transaction, many rows a statement.

        The idempotency claim ``answer()`` returns is stored in the same transaction
        (AlreadyStored if its key is taken). ``chunks`` may be a generator: the batch row is
        written once it is exhausted, with the item count it knows by then.
        """
        claim = answer() if answer else None
        try:
            with self.sessions.kw["bind"].begin() as conn:
                if claim is not None:
                    keep(conn, claim)
                for rows in _groups(chunks):
                    conn.execute(insert(JOBS), rows)
                conn.execute(insert(Batch.__table__), [row_values(batch)])
        except OperationalError as exc:
            raise StoreUnavailable("the job store is unavailable") from exc

    def mark_published(self, job_ids: Sequence[uuid.UUID], *, published: bool = True) -> None:
        """Record that queued jobs' messages went to the broker now, or (False) did not."""
        value = utcnow() if published else None
        with self.sessions() as session:
            for start in range(0, len(job_ids), 5000):  # stay under bind-parameter limits
                session.execute(
                    update(Job)
                    .where(Job.id.in_(job_ids[start : start + 5000]))
                    .where(Job.status == JobStatus.QUEUED)
                    .values(published_at=value)
                    .execution_options(synchronize_session=False)
                )
            session.commit()

    # -- transitions a worker makes --------------------------------------------------------
    def claim(
        self,
        job_ids: Sequence[uuid.UUID],
        token: str,
        *,
        lease_s: float,
        time_limits: Mapping[str, float],
        default_limit_s: float,
        running_cap: int,
        solo: bool = False,
    ) -> list[Row]:
        """Move queued jobs to ``running`` under one new lease and a deadline per job type.

        Only a queued job is claimable: a finished or running one (a duplicate message) is not,
        and a job whose lease expired goes back through the reconciler's rescue first. ``solo``
        claims only jobs that must run alone (the caller holds its process to itself), or else
        only the others. One statement, found by primary key: its cost does not grow with the
        queue.
        """
        stmt = claim_statement(
            job_ids,
            token,
            lease_s=lease_s,
            time_limits=time_limits,
            default_limit_s=default_limit_s,
            solo=solo,
            running_cap=running_cap,
        )
        with self.autocommit.connect() as conn:  # one statement: its own transaction
            jobs = conn.execute(stmt).all()
        self._snapshot(*jobs)
        order = {job_id: i for i, job_id in enumerate(job_ids)}
        return sorted(jobs, key=lambda j: order[j.id])

    def defer(self, job_ids: Sequence[uuid.UUID], delay_s: float) -> None:
        """Take back the messages of queued jobs not claimed for now (their tenant is at its cap).

        The reconciler publishes them again once ``delay_s`` has passed.
        """
        later = utcnow() + timedelta(seconds=delay_s)
        with self.autocommit.connect() as conn:
            conn.execute(
                update(JOBS)
                .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED)
                .where(Job.available_at.is_(None) | (Job.available_at < later))
                .values(published_at=None, available_at=later)
            )

    def hand_back(self, job_ids: Sequence[uuid.UUID], tokens: Sequence[str]) -> list[uuid.UUID]:
        """Requeue running jobs of these claims, the attempt uncounted; return the ids moved.

        A worker that is shutting down gives back what it cannot finish within its stop grace.
        The attempt is not charged and leaves no error: the job did nothing wrong. With no
        message left (``published_at`` NULL), the reconciler publishes it again at once.
        """
        if not job_ids:
            return []
        stmt = lifecycle.hand_back(job_ids, tokens).returning(*JOBS.c)
        with self.autocommit.connect() as conn:
            jobs = conn.execute(stmt).all()
        self._snapshot(*jobs)
        return [job.id for job in jobs]

    def hold(self, job_ids: Sequence[uuid.UUID], hold_s: float) -> None:
        """Mark queued jobs' messages as held by a live worker for ``hold_s`` from now.

        A solo job waits in its worker for the process to empty: its message is in no queue,
        and the reconciler must not take it for lost while the hold lasts (``lease_expires_at``
        of a queued row; the claim overwrites it with the job's lease).
        """
        if not job_ids:
            return
        with self.autocommit.connect() as conn:
            conn.execute(
                update(JOBS)
                .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED)
                .values(lease_expires_at=utcnow() + timedelta(seconds=hold_s))
            )

    def renew(self, tokens: Sequence[str], lease_s: float) -> dict[uuid.UUID, bool]:
        """Extend the leases of running jobs these claims own, until each job's deadline.

        Return each renewed job's cancel flag. A job missing from the answer lost its lease,
        ended, or passed its deadline: past its deadline a lease is never renewed.
        """
        now = utcnow()
        stmt = (
            update(JOBS)
            .where(Job.status == JobStatus.RUNNING, Job.worker_id.in_(tokens))
            .where(Job.deadline_at > now)
            .values(lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(Job.id, Job.cancel_requested)
        )
        with self.autocommit.connect() as conn:
            return {job_id: bool(flag) for job_id, flag in conn.execute(stmt)}

    def set_progress(self, job_id: uuid.UUID, token: str, progress: dict[str, Any]) -> Job | None:
        """Record progress of a running job; None when the lease was lost."""
        return self._run(
            update(JOBS)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.worker_id == token)
            .values(progress=progress, version=Job.version + 1)
        )

    def succeed(
        self,
        token: str,
        job_id: uuid.UUID,
        result: dict[str, Any],
        artifacts: Sequence[Artifact],
        *,
        kept: Collection[uuid.UUID],
    ) -> Row | None:
        """Finish a running job of one claim with its result and artifacts, in one transaction.

        None when the claim no longer holds it (taken over, timed out): nothing is written then.
        Artifacts are recorded only with the success, so a job whose lease was taken over leaves
        no rows behind. The rows earlier, lost attempts of the job recorded go, all but ``kept``
        (this attempt's, recorded as they were made) and those a model version or dataset refers
        to; their files are orphans, for the retention sweep.
        """
        stmt = lifecycle.succeed(token, job_id, result=result).returning(*JOBS.c)
        with self.sessions.kw["bind"].begin() as conn:
            done = conn.execute(stmt).one_or_none()
            if done is None:
                return None
            conn.execute(_lost_artifacts({job_id}, kept))
            if artifacts:
                conn.execute(insert(Artifact.__table__), [row_values(a) for a in artifacts])
        self._snapshot(done)
        return done

    def succeed_chunk(
        self,
        token: str,
        chunk_id: uuid.UUID,
        lines: bytes,
        failed: int,
        artifacts: Sequence[Artifact],
        *,
        kept: Collection[uuid.UUID],
    ) -> bool:
        """Finish a running chunk of one claim with its result lines and artifacts, at once.

        False when the claim no longer holds it (taken over, timed out, split): nothing is
        written then, and the rows of its earlier, lost attempts' artifacts go as for a job.
        """
        stmt = lifecycle.succeed(token, chunk_id, item_results=lines, items_failed=failed)
        stmt = stmt.returning(JOBS.c.id)
        with self.sessions.kw["bind"].begin() as conn:
            if conn.execute(stmt).first() is None:
                return False
            conn.execute(_lost_artifacts({chunk_id}, kept))
            files = [row_values(a) for a in artifacts]
            if files:
                conn.execute(insert(Artifact.__table__), files)
        return True

    # -- what happened to an attempt: its worker, the lease keeper, the reconciler ----------
    def record(self, attempt: Job, happened: Happened) -> Row | None:
        """Write what happened to an attempt: the first transition ``decide`` lists that matches.

        A chunk of many items whose attempt died is split in two instead (``lifecycle.bisects``).
        None when none matched: the job is no longer the attempt's to move (it was taken over,
        ended, or changed since ``attempt`` was read).
        """
        entry = lifecycle.bisects(attempt, happened)
        if entry is not None:
            return self._split(attempt, entry, lost=isinstance(happened, Expired))
        for stmt in lifecycle.decide(attempt, happened):
            job = self._run(stmt)
            if job is not None:
                return job
        return None

    def _split(self, chunk: Job, entry: dict[str, Any], *, lost: bool) -> Row | None:
        """Requeue a dead chunk's first half and insert its second, in one transaction."""
        first, second, count = chunks.halves(chunk.items)
        lost_at = utcnow() if lost else None
        stmt = lifecycle.split(chunk, entry, first, count, lost_at).returning(*JOBS.c)
        with self.sessions.kw["bind"].begin() as conn:
            row = conn.execute(stmt).one_or_none()
            if row is not None:
                conn.execute(
                    insert(JOBS), [chunks.second_half(row, second, chunk.item_count - count)]
                )
        return row

    # -- transitions a client makes --------------------------------------------------------
    def request_cancel(self, job_id: uuid.UUID) -> Row:
        """Cancel a queued job now, or flag a running one to stop; InvalidTransition if it ended."""
        job = None
        while job is None:  # a miss means the job moved since it was read: read it again
            current = self.get(job_id)
            if current is None:
                raise NotFound("job not found")
            job = self.record(current, Event.CANCEL_ASKED)
        if job.status == JobStatus.RUNNING and self.cache is not None:
            self.cache.announce_cancel([str(job_id)])
        return job

    def cancel_batch(self, batch_id: uuid.UUID) -> None:
        """Cancel a batch's queued jobs now and flag its running ones to stop."""
        with self.sessions() as session:
            batch = session.get(Batch, batch_id)
            if batch is None:
                raise NotFound("batch not found")
            batch.cancel_requested = True
            for move in (lifecycle.cancel, lifecycle.ask_cancel):
                session.execute(move(Job.batch_id == batch_id))
            session.commit()
        if self.cache is not None:
            self.cache.announce_cancel([str(batch_id)])

    # -- transitions the reconciler makes --------------------------------------------------
    def cancel_stranded(self) -> int:
        """Cancel queued jobs that carry a cancel flag (left by an older version); return count."""
        with self.sessions() as session:
            result = session.execute(lifecycle.cancel(Job.cancel_requested.is_(True)))
            session.commit()
        return result.rowcount or 0


def _groups(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Yield chunk rows in lists of at most ``INSERT_ROWS`` rows or ``INSERT_BYTES`` of items."""
    group: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        group.append(row)
        size += len(row["items"])
        if len(group) == INSERT_ROWS or size >= INSERT_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def _lost_artifacts(job_ids: Collection[uuid.UUID], kept: Collection[uuid.UUID]) -> Delete:
    """Return the DELETE of the jobs' artifact rows but ``kept`` and those rows referred to."""
    return delete(Artifact).where(
        Artifact.job_id.in_(job_ids),
        Artifact.id.not_in(kept),
        ~exists().where(ModelVersion.artifact_id == Artifact.id),
        ~exists().where(Dataset.artifact_id == Artifact.id),
    )
