"""What a job keeps of its attempts: the last one's ``error``, and an ``errors`` entry each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.db import utcnow
from shared.errors import JobCanceled, JobTimeout, WorkerLost
from shared.tables import Job

CANCELED_BY_REQUEST = "canceled by request"
TIMEOUT_MESSAGE = "the job ran past its time limit"


def error_doc(code: str, message: str) -> dict[str, str]:
    """Return the ``{code, message}`` document stored in ``jobs.error``."""
    return {"code": code, "message": message[:2000]}


def attempt_error(job: Job, code: str, message: str) -> dict[str, Any]:
    """Return the ``jobs.errors`` entry of the attempt that ``job`` (as claimed) is running."""
    return {
        **error_doc(code, message),
        "attempt": job.attempts,
        "worker": job.worker_id,
        "at": utcnow().isoformat(),
    }


def rescue_entry(job: Job, charged: bool, now: datetime) -> dict[str, Any]:
    """Return the errors entry of an attempt whose lease expired."""
    if job.cancel_requested:
        return attempt_error(job, JobCanceled.code, CANCELED_BY_REQUEST)
    if job.deadline_at is not None and job.deadline_at <= now:
        return attempt_error(job, JobTimeout.code, TIMEOUT_MESSAGE)
    note = ""
    if not charged:
        note = "; it ran beside other jobs, so the attempt is not counted"
        if is_suspect(job, charged):
            note += ", and it runs alone next (its worker was lost before, with it running)"
    entry = attempt_error(job, WorkerLost.code, f"its worker was lost{note}")
    return {**entry, "charged": charged}


def is_suspect(job: Job, charged: bool) -> bool:
    """Return whether a job lost beside others may be what killed its worker: it was there before.

    One loss beside others is no evidence: a deploy's SIGKILL, a host lost or a neighbour's crash
    look the same. A job present at a second loss is suspected, and runs alone from then on.
    """
    return not charged and any(e.get("code") == WorkerLost.code for e in job.errors or [])


def with_entry(job: Job, entry: dict[str, Any]) -> dict[str, Any]:
    """Return the column values that record one more failed attempt of ``job``."""
    return {
        "error": error_doc(entry["code"], entry["message"]),
        "errors": [*(job.errors or []), entry],
    }


def lost_message(job: Job, entry: dict[str, Any]) -> str:
    """Return the message of a job that ends because its worker was lost (or it ran late)."""
    if entry["code"] == JobTimeout.code:
        return entry["message"]
    return f"the worker was lost {job.attempts} times"
