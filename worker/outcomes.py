"""How a job's attempt ended, recorded once: success, failure, cancel, timeout or a retry."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import DBAPIError

from shared.errors import AigcError, JobCanceled, JobTimeout, LeaseLost, RetryableError
from shared.jobs.status import JobStatus
from shared.services import Services
from worker.context import JobContext

log = logging.getLogger(__name__)

T = TypeVar("T")
TIMEOUT_MESSAGE = "the job ran past its time limit"


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


def settle(
    ctx: JobContext, ran: dict[str, Any] | BaseException, services: Services
) -> Outcome | dict[str, Any]:
    """Return a handler's result to commit, or record how the attempt ended and return that."""
    if isinstance(ran, BaseException):
        ctx.finished = True
        return record_failure(ctx, ran, services)
    if ctx.should_stop():  # flags the keeper set; no extra read per job on the hot path
        ctx.finished = True
        return record_stop(ctx, services)
    return ran


def record_failure(ctx: JobContext, exc: BaseException, services: Services) -> Outcome:
    """Record an attempt that raised: timed out, lost, canceled, retried or failed."""
    store = services.store
    if ctx.timed_out or isinstance(exc, JobTimeout | SoftTimeLimitExceeded):
        return _ended(
            durably(services, lambda: store.fail(ctx.job, "timeout", TIMEOUT_MESSAGE)), ctx
        )
    if isinstance(exc, LeaseLost) or ctx.lease_lost:
        log.warning("job %s: lease lost; another worker owns it now", ctx.job_id)
        return Outcome.LEASE_LOST
    if isinstance(exc, JobCanceled):
        return record_stop(ctx, services)
    if isinstance(exc, RetryableError | DBAPIError):
        return _retry(ctx, exc, services)
    if isinstance(exc, AigcError):
        return _ended(durably(services, lambda: store.fail(ctx.job, exc.code, exc.message)), ctx)
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, SystemExit: the lease expires and the reconciler retries
    # Not log.exception: the exception is no longer being handled here, so pass it to be logged.
    log.error("job %s: handler crashed", ctx.job_id, exc_info=exc)
    # The message names the error type but never carries a stack trace to the client.
    message = f"{type(exc).__name__}: {exc}"
    return _ended(durably(services, lambda: store.fail(ctx.job, "internal_error", message)), ctx)


def _retry(ctx: JobContext, exc: BaseException, services: Services) -> Outcome:
    code = exc.code if isinstance(exc, AigcError) else "store_unavailable"
    message = exc.message if isinstance(exc, AigcError) else "the job store was unavailable"
    delay = backoff_s(ctx.job.attempts, services)
    job = durably(services, lambda: services.store.retry(ctx.job, code, message, delay))
    if job is None:
        return Outcome.LEASE_LOST
    return Outcome.RETRYING if job.status == JobStatus.QUEUED else Outcome(job.status)


def backoff_s(attempt: int, services: Services) -> float:
    """Return the delay before retry ``attempt + 1``: exponential, capped, with jitter."""
    settings = services.settings
    ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)  # jitter spreads a crowd of retries apart


def record_stop(ctx: JobContext, services: Services) -> Outcome:
    """Record an attempt that stopped: canceled (or timed out, or lost, already recorded)."""
    if ctx.timed_out:
        return late(ctx)
    if ctx.lease_lost:
        return Outcome.LEASE_LOST
    return _ended(durably(services, lambda: services.store.cancel_running(ctx.job)), ctx)


def _ended(job: Any | None, ctx: JobContext) -> Outcome:
    # None means the job was no longer this claim's to end: it timed out or was taken over.
    if job is None:
        return late(ctx)
    return (
        Outcome.TIMED_OUT if job.error and job.error["code"] == "timeout" else Outcome(job.status)
    )


def late(ctx: JobContext) -> Outcome:
    """Return the outcome of a job no longer this claim's: it timed out, or was taken over."""
    return Outcome.TIMED_OUT if ctx.timed_out else Outcome.LEASE_LOST


def durably(services: Services, write: Callable[[], T]) -> T:
    """Run a finishing write, retrying a database blip for up to half a lease.

    The job's result is worth keeping: past this the lease may expire, and the reconciler will
    run the job again instead.
    """
    deadline = time.monotonic() + services.settings.lease_s / 2
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
