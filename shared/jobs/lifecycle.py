"""Every transition of a job's state, built from one table, and the one decision of which to take.

Each transition is one conditional ``UPDATE … WHERE status IN <its from-states>``, so a duplicate
message, a revived worker or a racing one can never move a job twice. A worker's writes are also
guarded by ``worker_id``, the token of the claim that owns the lease; the reconciler's rescue by
the row's ``version``, so that a cancel landing between its read and its write makes it read
again instead of being lost. A statement that matches no row (the race was lost) changes nothing;
asking for a move the table lacks raises ``InvalidTransition``.

``decide`` turns what happened to an attempt into the statements to try, in order: the first
whose guard holds is the transition taken. The worker, the lease keeper, the reconciler and the
API's cancel all go through it; ``shared.jobs.store`` runs the statements.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Update, update
from sqlalchemy.exc import DBAPIError

from shared.db import utcnow
from shared.errors import (
    AigcError,
    InvalidTransition,
    JobCanceled,
    JobTimeout,
    LeaseLost,
    RetryableError,
    StoreUnavailable,
)
from shared.jobs.attempts import (
    CANCELED_BY_REQUEST,
    TIMEOUT_MESSAGE,
    attempt_error,
    error_doc,
    is_suspect,
    lost_message,
    rescue_entry,
    with_entry,
)
from shared.jobs.status import JobStatus
from shared.tables import Job

log = logging.getLogger(__name__)

JOBS = Job.__table__
QUEUED, RUNNING = JobStatus.QUEUED, JobStatus.RUNNING


@dataclass(frozen=True)
class Transition:
    """One move of the state machine: from these states to one, setting only these columns."""

    name: str
    source: frozenset[JobStatus]
    target: JobStatus
    sets: frozenset[str]


_ENDS = frozenset({"finished_at", "lease_expires_at", "deadline_at"})
_ERRORS = frozenset({"error", "errors"})
_LET_GO = frozenset({"worker_id", "lease_expires_at", "deadline_at", "published_at"})


def _move(name: str, source: JobStatus, target: JobStatus, sets: Collection[str]) -> Transition:
    return Transition(name, frozenset({source}), target, frozenset(sets))


# The table: every move a job can make. Versions are bumped by every one of them.
CLAIM = _move(
    "claim",
    QUEUED,
    RUNNING,
    {"attempts", "worker_id", "started_at", "lease_expires_at", "deadline_at"},
)
CANCEL = _move("cancel", QUEUED, JobStatus.CANCELED, {"cancel_requested", "finished_at", "error"})
# A running job is only flagged: its worker stops it, or the rescue ends it.
ASK_CANCEL = _move("ask_cancel", RUNNING, RUNNING, {"cancel_requested"})
SUCCEED = _move(
    "succeed",
    RUNNING,
    JobStatus.SUCCEEDED,
    _ENDS | {"error", "result", "item_results", "items_failed"},
)
FAIL = _move("fail", RUNNING, JobStatus.FAILED, _ENDS | _ERRORS)
STOP = _move("stop", RUNNING, JobStatus.CANCELED, _ENDS | _ERRORS)
RETRY = _move("retry", RUNNING, QUEUED, _LET_GO | _ERRORS | {"available_at"})
# A stopping worker gives its job back: the attempt is refunded and leaves no error.
HAND_BACK = _move("hand_back", RUNNING, QUEUED, _LET_GO | {"attempts"})
RESCUE = _move("rescue", RUNNING, QUEUED, _LET_GO | _ERRORS | {"attempts", "solo"})
# A chunk whose attempt died keeps its first half and runs again; its second half is a new row.
SPLIT = _move(
    "split", RUNNING, QUEUED, _LET_GO | _ERRORS | {"attempts", "solo", "items", "item_count"}
)
TABLE = (CLAIM, CANCEL, ASK_CANCEL, SUCCEED, FAIL, STOP, RETRY, HAND_BACK, RESCUE, SPLIT)
MOVES = frozenset((source, t.target) for t in TABLE for source in t.source)


def statement(move: Transition, *where: ColumnElement[bool], **values: Any) -> Update:
    """Return the guarded UPDATE of one transition on the rows ``where`` selects."""
    stray = values.keys() - move.sets
    if stray:
        raise InvalidTransition(f"{move.name} does not set {', '.join(sorted(stray))}")
    return (
        update(JOBS)
        .where(JOBS.c.status.in_(move.source), *where)
        .values(status=move.target, version=JOBS.c.version + 1, **values)
    )


def _check(move: Transition, job: Job) -> None:
    """Raise ``InvalidTransition`` unless ``job`` (as its caller read it) may make ``move``."""
    if job.status not in move.source:
        raise InvalidTransition(
            f"a {job.status} job cannot {move.name.replace('_', ' ')}", job_status=job.status
        )


def _guard(job: Job, lost_at: datetime | None) -> tuple[ColumnElement[bool], ...]:
    """Return the guard of a write by the claim that holds the job, or (``lost_at``) a rescue's.

    The rescue's is the row as it read it, its lease still expired.
    """
    if lost_at is None:
        return JOBS.c.id == job.id, JOBS.c.worker_id == job.worker_id
    return JOBS.c.id == job.id, JOBS.c.version == job.version, JOBS.c.lease_expires_at < lost_at


def _ended(now: datetime) -> dict[str, Any]:
    return {"finished_at": now, "lease_expires_at": None, "deadline_at": None}


# -- the named transitions -------------------------------------------------------------------
def claim(
    job_ids: Sequence[uuid.UUID],
    token: str,
    now: datetime,
    *,
    lease_s: float,
    deadline: Any,
    where: Sequence[ColumnElement[bool]],
) -> Update:
    """Return the claim of queued jobs under one new lease, counting an attempt each."""
    return statement(
        CLAIM,
        JOBS.c.id.in_(job_ids),
        *where,
        attempts=JOBS.c.attempts + 1,
        worker_id=token,
        started_at=now,
        lease_expires_at=now + timedelta(seconds=lease_s),
        deadline_at=deadline,
    )


def cancel(*where: ColumnElement[bool]) -> Update:
    """Return the cancel of queued jobs: they end before they run."""
    return statement(
        CANCEL,
        *where,
        cancel_requested=True,
        finished_at=utcnow(),
        error=error_doc(JobCanceled.code, CANCELED_BY_REQUEST),
    )


def ask_cancel(*where: ColumnElement[bool]) -> Update:
    """Return the flagging of running jobs to stop."""
    return statement(ASK_CANCEL, *where, cancel_requested=True)


def succeed(token: str, job_id: uuid.UUID, **outcome: Any) -> Update:
    """Return the success of a claim's running job: its ``result``, or a chunk's result lines."""
    return statement(
        SUCCEED,
        JOBS.c.id == job_id,
        JOBS.c.worker_id == token,
        **_ended(utcnow()),
        error=None,
        **outcome,
    )


def fail(job: Job, entry: dict[str, Any], *, lost_at: datetime | None = None) -> Update:
    """Return the failure of a running attempt: by its claim, or (``lost_at``) by the rescue."""
    _check(FAIL, job)
    return statement(
        FAIL, *_guard(job, lost_at), **_ended(lost_at or utcnow()), **with_entry(job, entry)
    )


def stop(job: Job, *, lost_at: datetime | None = None) -> Update:
    """Return the end of a running attempt whose cancel was requested (by its claim, or lost)."""
    _check(STOP, job)
    entry = attempt_error(job, JobCanceled.code, CANCELED_BY_REQUEST)
    # Only a requested cancel ends so: the flag is read in the guard, not from a stale row.
    guard = (*_guard(job, lost_at), JOBS.c.cancel_requested.is_(True))
    return statement(STOP, *guard, **_ended(lost_at or utcnow()), **with_entry(job, entry))


def retry(job: Job, entry: dict[str, Any], delay_s: float) -> Update:
    """Return the requeue of a running attempt after a transient error, due after ``delay_s``."""
    _check(RETRY, job)
    guard = (JOBS.c.attempts < JOBS.c.max_attempts, JOBS.c.cancel_requested.is_(False))
    return statement(
        RETRY,
        *_guard(job, None),
        *guard,
        **_let_go(),
        available_at=utcnow() + timedelta(seconds=delay_s),
        **with_entry(job, entry),
    )


def _let_go() -> dict[str, Any]:
    # No message is left for the job: the reconciler publishes it once it is due.
    return dict.fromkeys(_LET_GO)


def hand_back(job_ids: Sequence[uuid.UUID], tokens: Sequence[str]) -> Update:
    """Return the requeue of running jobs of these claims, their attempts refunded."""
    return statement(
        HAND_BACK,
        JOBS.c.id.in_(job_ids),
        JOBS.c.worker_id.in_(tokens),
        **_let_go(),
        attempts=JOBS.c.attempts - 1,
    )


def rescue(job: Job, entry: dict[str, Any], charged: bool, now: datetime) -> Update:
    """Return the requeue of a job whose lease expired; an uncharged attempt is refunded."""
    _check(RESCUE, job)
    return statement(
        RESCUE,
        *_guard(job, now),
        **_let_go(),
        attempts=job.attempts if charged else job.attempts - 1,
        solo=job.solo or is_suspect(job, charged),
        **with_entry(job, entry),
    )


def split(
    job: Job, entry: dict[str, Any], first: bytes, count: int, lost_at: datetime | None
) -> Update:
    """Return the requeue of a dead chunk's first ``count`` items (``first``), attempts anew.

    Guarded as its claim's write, or (``lost_at``) as the rescue's. The caller inserts the
    second half in the same transaction.
    """
    _check(SPLIT, job)
    return statement(
        SPLIT,
        *_guard(job, lost_at),
        JOBS.c.cancel_requested.is_(False),
        **_let_go(),
        attempts=0,
        solo=job.solo or is_suspect(job, False),
        items=first,
        item_count=count,
        **with_entry(job, entry),
    )


# -- what happened, and the transition it calls for ------------------------------------------
class Event(StrEnum):
    """What happened to an attempt, beside an exception or a lost lease."""

    TIMED_OUT = "timed_out"  # it ran past its deadline
    LEASE_LOST = "lease_lost"  # seen by its worker: another claim owns the job now
    STOPPED = "stopped"  # it stopped on its cancel flag (or ignored it past the grace)
    CANCEL_ASKED = "cancel_asked"  # a client asked for a cancel


@dataclass(frozen=True)
class Raised:
    """The attempt's handler raised ``error``; a transient one runs again after ``retry_in_s``."""

    error: BaseException
    retry_in_s: float = 0.0


@dataclass(frozen=True)
class Expired:
    """The attempt's lease expired (its worker died or was cut off); ``charged``: it counts."""

    charged: bool


Happened = Event | Raised | Expired


def bisects(attempt: Job, happened: Happened) -> dict[str, Any] | None:
    """Return the errors entry if ``happened`` splits the chunk ``attempt`` in two, else None.

    A chunk of many items whose attempt died (its handler crashed, it ran past its deadline,
    or its worker was lost with the attempt charged, or suspected) runs again as two halves, and
    so on down to one item: a poison item then fails alone, by the rules of a job, and every
    other item runs once more. A transient error retries the whole chunk; a canceled one stops.
    """
    if (attempt.item_count or 0) < 2 or attempt.cancel_requested:
        return None
    if happened is Event.TIMED_OUT or (
        isinstance(happened, Raised) and isinstance(happened.error, JobTimeout)
    ):
        return attempt_error(attempt, JobTimeout.code, TIMEOUT_MESSAGE)
    if isinstance(happened, Expired) and (happened.charged or is_suspect(attempt, False)):
        return rescue_entry(attempt, happened.charged, utcnow())
    if isinstance(happened, Raised) and not isinstance(
        happened.error, AigcError | RetryableError | DBAPIError
    ):
        exc = happened.error
        log.error("chunk %s: handler crashed; splitting it", attempt.id, exc_info=exc)
        return attempt_error(attempt, AigcError.code, f"{type(exc).__name__}: {exc}")
    return None


def decide(attempt: Job, happened: Happened) -> tuple[Update, ...]:
    """Return the guarded writes for what happened, in order; the first that matches is taken."""
    if isinstance(happened, Raised):
        return _raised(attempt, happened)
    if isinstance(happened, Expired):
        return (_rescued(attempt, happened.charged),)
    if happened is Event.TIMED_OUT:
        return (fail(attempt, attempt_error(attempt, JobTimeout.code, TIMEOUT_MESSAGE)),)
    if happened is Event.STOPPED:
        return (stop(attempt),)
    if happened is Event.CANCEL_ASKED:
        return (_cancel(attempt),)
    log.warning("job %s: lease lost; another worker owns it now", attempt.id)
    return ()  # the job is another claim's to end


def _raised(job: Job, raised: Raised) -> tuple[Update, ...]:
    exc = raised.error
    if isinstance(exc, JobTimeout):
        return decide(job, Event.TIMED_OUT)
    if isinstance(exc, LeaseLost):
        return decide(job, Event.LEASE_LOST)
    if isinstance(exc, JobCanceled):
        return decide(job, Event.STOPPED)
    if isinstance(exc, RetryableError | DBAPIError):
        if not isinstance(exc, AigcError):
            exc = StoreUnavailable("the job store was unavailable")
        entry = attempt_error(job, exc.code, exc.message)
        # Out of attempts it fails; asked to cancel meanwhile, it is canceled.
        return retry(job, entry, raised.retry_in_s), stop(job), fail(job, entry)
    if isinstance(exc, AigcError):
        return (fail(job, attempt_error(job, exc.code, exc.message)),)
    # Not log.exception: the exception is no longer being handled here, so pass it to be logged.
    log.error("job %s: handler crashed", job.id, exc_info=exc)
    # The message names the error type but never carries a stack trace to the client.
    return (fail(job, attempt_error(job, AigcError.code, f"{type(exc).__name__}: {exc}")),)


def _rescued(job: Job, charged: bool) -> Update:
    now = utcnow()
    entry = rescue_entry(job, charged, now)
    if job.cancel_requested:
        return stop(job, lost_at=now)
    if entry["code"] == JobTimeout.code or (charged and job.attempts >= job.max_attempts):
        return fail(job, {**entry, "message": lost_message(job, entry)}, lost_at=now)
    return rescue(job, entry, charged, now)


def _cancel(job: Job) -> Update:
    for move, build in ((CANCEL, cancel), (ASK_CANCEL, ask_cancel)):
        if job.status in move.source:
            return build(JOBS.c.id == job.id)
    raise InvalidTransition(f"job is already {job.status}", job_status=job.status)
