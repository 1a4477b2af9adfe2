"""Runs one job: claim the row, call its handler under a lease, and record how it ended."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError

from shared.errors import AigcError, InputError, JobCanceled, LeaseLost, RetryableError
from shared.jobs import jobtypes
from shared.jobs.status import JobStatus
from shared.services import Services
from worker.context import Heartbeat, JobContext

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """How one delivery of a job's message ended, as the worker saw it."""

    DROPPED = "dropped"  # not ours to run: finished, canceled, or running under a live lease
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    RETRYING = "retrying"
    LEASE_LOST = "lease_lost"


def claim_token() -> str:
    """Return a token unique to one claim: host, process and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def execute(job_ids: list[uuid.UUID], services: Services) -> list[Outcome]:
    """Claim the jobs, run each under one shared lease, and record how each ended.

    Jobs of one message run concurrently, so a chunk of generation jobs reaches the model's
    scheduler together and is batched; every state change goes through the job store.
    """
    token = claim_token()
    jobs = services.store.claim(job_ids, token, services.settings.lease_s)
    dropped = [Outcome.DROPPED] * (len(job_ids) - len(jobs))
    if dropped:
        log.info("%d of %d jobs not claimable; messages dropped", len(dropped), len(job_ids))
    if not jobs:
        return dropped
    contexts = [JobContext(job, token, services) for job in jobs]
    with Heartbeat(contexts, services.settings.heartbeat_s):
        if len(contexts) == 1:
            ran = [run_handler(contexts[0])]
        else:
            with ThreadPoolExecutor(len(contexts), thread_name_prefix="aigc-job") as pool:
                ran = list(pool.map(run_handler, contexts))
        outcomes = _commit_successes(contexts, ran, services)
    return [*outcomes, *dropped]


def run_handler(ctx: JobContext) -> Outcome | dict[str, Any]:
    """Run one claimed job's handler; return its result, or the outcome already recorded."""
    try:
        result = _call_handler(ctx)
    except BaseException as exc:
        ctx.finished = True
        return _record_failure(ctx, exc)
    if ctx.stop_flag():  # what the heartbeat saw; no extra read per job on the hot path
        ctx.finished = True
        return _record_stop(ctx)
    return result


def _commit_successes(
    contexts: list[JobContext], ran: list[Outcome | dict[str, Any]], services: Services
) -> list[Outcome]:
    """Record every successful job of one claim in one transaction, with its artifacts."""
    results = {c.job_id: r for c, r in zip(contexts, ran, strict=True) if isinstance(r, dict)}
    artifacts = [a for c in contexts if c.job_id in results for a in c.pending_artifacts]
    done = {job.id for job in services.store.succeed_many(contexts[0].token, results, artifacts)}
    outcomes = []
    for ctx, outcome in zip(contexts, ran, strict=True):
        if isinstance(outcome, dict):
            # A job missing from `done` was taken over by a newer claim: its result is dropped.
            outcome = Outcome.SUCCEEDED if ctx.job_id in done else Outcome.LEASE_LOST
            if outcome is Outcome.SUCCEEDED:
                ctx.discard_workdir()
        ctx.finished = True
        outcomes.append(outcome)
    return outcomes


def _call_handler(ctx: JobContext) -> dict[str, Any]:
    job_type = jobtypes.get(ctx.job.type)
    try:
        params = job_type.params.model_validate(ctx.job.params)
    except ValidationError as exc:
        raise InputError(f"invalid params: {exc.errors()[0]['msg']}") from exc
    handler = job_type.resolve_handler()
    return handler(ctx, params) or {}


def _record_failure(ctx: JobContext, exc: BaseException) -> Outcome:
    store, job_id, token = ctx.services.store, ctx.job_id, ctx.token
    if isinstance(exc, LeaseLost) or ctx.lease_lost:
        log.warning("job %s: lease lost; another worker owns it now", job_id)
        return Outcome.LEASE_LOST
    if isinstance(exc, JobCanceled):
        return _record_stop(ctx)
    if isinstance(exc, SoftTimeLimitExceeded):
        return _ended(
            store.fail(job_id, token, "timeout", "the job ran past its time limit"), Outcome.FAILED
        )
    if isinstance(exc, RetryableError):
        job = store.retry(job_id, token, exc.code, exc.message)
        if job is not None and job.status == JobStatus.QUEUED:
            ctx.services.publisher.publish([job])
            return Outcome.RETRYING
        return Outcome.FAILED
    if isinstance(exc, AigcError):
        return _ended(store.fail(job_id, token, exc.code, exc.message), Outcome.FAILED)
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, SystemExit: the lease expires and the reconciler retries
    log.exception("job %s: handler crashed", job_id)
    # The message names the error type but never carries a stack trace to the client.
    message = f"{type(exc).__name__}: {exc}"
    return _ended(store.fail(job_id, token, "internal_error", message), Outcome.FAILED)


def _record_stop(ctx: JobContext) -> Outcome:
    if ctx.lease_lost:
        return Outcome.LEASE_LOST
    return _ended(ctx.services.store.cancel_running(ctx.job_id, ctx.token), Outcome.CANCELED)


def _ended(job: object | None, outcome: Outcome) -> Outcome:
    # None means a newer claim owns the job: this worker's result is discarded, not applied twice.
    return outcome if job is not None else Outcome.LEASE_LOST
