"""Runs jobs: claim the rows, call their handlers under a lease, and record how each ended."""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, ThreadPoolExecutor, wait
from enum import StrEnum
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from shared.errors import AigcError, InputError, JobCanceled, JobTimeout, LeaseLost, RetryableError
from shared.jobs import jobtypes
from shared.jobs.status import JobStatus
from shared.services import Services
from worker.context import JobContext
from worker.gate import GATE
from worker.lease import keeper_of_process

log = logging.getLogger(__name__)

T = TypeVar("T")
TIMEOUT_MESSAGE = "the job ran past its time limit"
COMMIT_WAVE_S = 1.0  # jobs of one message that finished by then are committed together


class Outcome(StrEnum):
    """How one delivery of a job's message ended, as the worker saw it."""

    DROPPED = "dropped"  # not ours to run: finished, canceled, running, or not yet due
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    RETRYING = "retrying"
    LEASE_LOST = "lease_lost"


def claim_token() -> str:
    """Return a token unique to one claim: host, process and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def execute(
    job_ids: list[uuid.UUID], services: Services, *, in_order: bool = True
) -> list[Outcome]:
    """Claim the jobs, run each under the process's lease keeper, and record how each ended.

    Ordinary jobs of one message run concurrently, so a chunk of generation jobs reaches the
    model's scheduler together; a solo job runs with nothing else running in this process.
    ``in_order`` says the message came from its lane's main queue, so its jobs' publish times
    tell how far the lane has been read.
    """
    with GATE.shared():
        outcomes = _claim_and_run(job_ids, services, in_order=in_order, solo=False)
    # A solo job is claimed only once nothing else runs here: if it kills the process, it was
    # alone, and no neighbour (not even one waiting for its turn) dies with it.
    missed = [i for i in job_ids if i not in outcomes]
    for job_id in services.store.queued_solo(missed) if missed else []:
        with GATE.exclusive():
            outcomes.update(_claim_and_run([job_id], services, in_order=in_order, solo=True))
    dropped = len(job_ids) - len(outcomes)
    if dropped:
        log.info("%d of %d jobs not claimable; messages dropped", dropped, len(job_ids))
    return [outcomes.get(i, Outcome.DROPPED) for i in job_ids]


def _claim_and_run(
    job_ids: list[uuid.UUID], services: Services, *, in_order: bool, solo: bool
) -> dict[uuid.UUID, Outcome]:
    settings = services.settings
    jobs = services.store.claim(
        job_ids,
        claim_token(),
        lease_s=settings.lease_s,
        time_limits=jobtypes.time_limits(settings),
        default_limit_s=settings.generate_time_limit_s,
        solo=solo,
    )
    if not jobs:
        return {}
    contexts = [JobContext(job, services) for job in jobs]
    keeper_of_process(services).track(contexts, in_order=in_order)
    return _run_together(contexts, services)


def _run_together(contexts: list[JobContext], services: Services) -> dict[uuid.UUID, Outcome]:
    """Run jobs side by side and commit their successes in waves, one transaction each.

    A job whose thread hangs cannot hold back the others: what finished is committed every
    ``COMMIT_WAVE_S``, and at the deadline the hung job is left to the lease keeper, which has
    ended it already; its thread is abandoned (and counted, if it stays stuck).
    """
    if len(contexts) == 1:
        return _finish(contexts, [run_handler(contexts[0], services)], services)
    pool = ThreadPoolExecutor(len(contexts), thread_name_prefix="aigc-job")
    pending = {pool.submit(run_handler, c, services): c for c in contexts}
    outcomes: dict[uuid.UUID, Outcome] = {}
    while pending:
        done, _ = wait(pending, timeout=COMMIT_WAVE_S, return_when=ALL_COMPLETED)
        wave = [pending.pop(f) for f in done]
        outcomes.update(_finish(wave, [f.result() for f in done], services))
        if pending and time.monotonic() > max(c.deadline for c in pending.values()):
            break
    for future, ctx in pending.items():
        outcomes[ctx.job_id] = Outcome.TIMED_OUT
        future.add_done_callback(lambda _, c=ctx: keeper_of_process().untrack([c]))
    pool.shutdown(wait=False)
    return outcomes


def run_handler(ctx: JobContext, services: Services) -> Outcome | dict[str, Any]:
    """Run one claimed job's handler; return its result, or the outcome already recorded."""
    try:
        result = _call_handler(ctx)
    except BaseException as exc:
        ctx.finished = True
        return _record_failure(ctx, exc, services)
    if ctx.should_stop():  # flags the keeper set; no extra read per job on the hot path
        ctx.finished = True
        return _record_stop(ctx, services)
    return result


def _finish(
    contexts: list[JobContext], ran: list[Outcome | dict[str, Any]], services: Services
) -> dict[uuid.UUID, Outcome]:
    """Record the successful jobs among ``contexts`` in one transaction, with their artifacts."""
    if not contexts:
        return {}
    results = {c.job_id: r for c, r in zip(contexts, ran, strict=True) if isinstance(r, dict)}
    artifacts = [a for c in contexts if c.job_id in results for a in c.pending_artifacts]
    token = contexts[0].token
    try:
        stored = durably(services, lambda: services.store.succeed_many(token, results, artifacts))
    finally:
        keeper_of_process().untrack(contexts)
    done = {job.id for job in stored}
    outcomes = {}
    for ctx, outcome in zip(contexts, ran, strict=True):
        if isinstance(outcome, dict):
            # A job missing from `done` was taken over, or timed out meanwhile: its result goes.
            outcome = Outcome.SUCCEEDED if ctx.job_id in done else _late(ctx)
            if outcome is Outcome.SUCCEEDED:
                ctx.discard_workdir()
        ctx.finished = True
        outcomes[ctx.job_id] = outcome
    return outcomes


def _call_handler(ctx: JobContext) -> dict[str, Any]:
    job_type = jobtypes.get(ctx.job.type)
    try:
        params = job_type.params.model_validate(ctx.job.params)
    except ValidationError as exc:
        raise InputError(f"invalid params: {exc.errors()[0]['msg']}") from exc
    handler = job_type.resolve_handler()
    return handler(ctx, params) or {}


def _record_failure(ctx: JobContext, exc: BaseException, services: Services) -> Outcome:
    store = services.store
    if ctx.timed_out or isinstance(exc, JobTimeout | SoftTimeLimitExceeded):
        return _ended(
            durably(services, lambda: store.fail(ctx.job, "timeout", TIMEOUT_MESSAGE)), ctx
        )
    if isinstance(exc, LeaseLost) or ctx.lease_lost:
        log.warning("job %s: lease lost; another worker owns it now", ctx.job_id)
        return Outcome.LEASE_LOST
    if isinstance(exc, JobCanceled):
        return _record_stop(ctx, services)
    if isinstance(exc, RetryableError | DBAPIError):
        return _retry(ctx, exc, services)
    if isinstance(exc, AigcError):
        return _ended(durably(services, lambda: store.fail(ctx.job, exc.code, exc.message)), ctx)
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, SystemExit: the lease expires and the reconciler retries
    log.exception("job %s: handler crashed", ctx.job_id)
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


def _record_stop(ctx: JobContext, services: Services) -> Outcome:
    if ctx.timed_out:
        return _late(ctx)
    if ctx.lease_lost:
        return Outcome.LEASE_LOST
    return _ended(durably(services, lambda: services.store.cancel_running(ctx.job)), ctx)


def _ended(job: Any | None, ctx: JobContext) -> Outcome:
    # None means the job was no longer this claim's to end: it timed out or was taken over.
    if job is None:
        return _late(ctx)
    return (
        Outcome.TIMED_OUT if job.error and job.error["code"] == "timeout" else Outcome(job.status)
    )


def _late(ctx: JobContext) -> Outcome:
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
