"""How a job's attempt ended, recorded once: success, failure, cancel, timeout or a retry."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import DBAPIError

from shared.config import Settings
from shared.errors import JobTimeout
from shared.jobs.lifecycle import Event, Happened, Raised
from shared.jobs.status import JobStatus
from worker.context import JobContext

log = logging.getLogger(__name__)

T = TypeVar("T")


class Outcome(StrEnum):
    """How one delivery of a job's message ended, as the worker saw it."""

    DROPPED = "dropped"  # not ours to run: finished, canceled, running, or not yet due
    DEFERRED = "deferred"  # its tenant runs its cap of jobs: offered again shortly
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    RETRYING = "retrying"
    LEASE_LOST = "lease_lost"


# How an attempt ended, by the status its recorded transition left the job in.
_BY_STATUS = {
    JobStatus.QUEUED: Outcome.RETRYING,
    JobStatus.SUCCEEDED: Outcome.SUCCEEDED,
    JobStatus.FAILED: Outcome.FAILED,
    JobStatus.CANCELED: Outcome.CANCELED,
}


def settle(ctx: JobContext, ran: T | BaseException) -> Outcome | T:
    """Return a handler's result to commit (a chunk's: a list), or record how the attempt ended."""
    if isinstance(ran, BaseException):
        ctx.finished = True
        return record_failure(ctx, ran)
    if ctx.should_stop():  # flags the keeper set; no extra read per job on the hot path
        ctx.finished = True
        return record_stop(ctx)
    return ran


def record_failure(ctx: JobContext, exc: BaseException) -> Outcome:
    """Record an attempt that raised: timed out, lost, canceled, retried or failed."""
    if ctx.timed_out or isinstance(exc, SoftTimeLimitExceeded):
        return _record(ctx, Event.TIMED_OUT)
    if ctx.lease_lost:
        return _record(ctx, Event.LEASE_LOST)
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, SystemExit: the lease expires and the reconciler retries
    return _record(ctx, Raised(exc, retry_in_s=backoff_s(ctx.job.attempts, ctx.settings)))


def backoff_s(attempt: int, settings: Settings) -> float:
    """Return the delay before retry ``attempt + 1``: exponential, capped, with jitter."""
    ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)  # jitter spreads a crowd of retries apart


def record_stop(ctx: JobContext) -> Outcome:
    """Record an attempt that stopped: canceled (or timed out, or lost, already recorded)."""
    if ctx.timed_out:
        return late(ctx)
    if ctx.lease_lost:
        return Outcome.LEASE_LOST
    return _record(ctx, Event.STOPPED)


def _record(ctx: JobContext, happened: Happened) -> Outcome:
    job = durably(ctx.settings, lambda: ctx.ports.store.record(ctx.job, happened))
    # None means the job was no longer this claim's to end: it timed out or was taken over.
    if job is None:
        return late(ctx)
    if job.error and job.error["code"] == JobTimeout.code:
        return Outcome.TIMED_OUT
    return _BY_STATUS[job.status]


def late(ctx: JobContext) -> Outcome:
    """Return the outcome of a job no longer this claim's: it timed out, or was taken over."""
    return Outcome.TIMED_OUT if ctx.timed_out else Outcome.LEASE_LOST


def durably(settings: Settings, write: Callable[[], T]) -> T:
    """Run a finishing write, retrying a database blip for up to half a lease.

    The job's result is worth keeping: past this the lease may expire, and the reconciler will
    run the job again instead.
    """
    deadline = time.monotonic() + settings.lease_s / 2
    delay = 0.1
    while True:
        try:
            return write()
        except DBAPIError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("finishing write failed (%s); retrying in %.1fs", type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
