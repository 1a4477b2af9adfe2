"""Runs jobs: claim the rows, call their handlers under a lease, and record how each ended."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.errors import InputError
from shared.jobs import jobtypes
from shared.observe.logs import job_fields
from shared.types import FillWindow
from worker import metrics
from worker.context import JobContext, Ports
from worker.gate import GATE
from worker.lease import keeper_of_process
from worker.outcomes import Outcome, durably, late, settle

log = logging.getLogger(__name__)

COMMIT_WAVE_S = 1.0  # jobs of one message that finished by then are committed together
ITEM_THREADS = 8  # threads for the items of a chunk whose job type has no chunk handler
CAPPED_RETRY_S = 1.0  # a job whose tenant runs its cap of jobs is offered again after this

Ran = dict[str, Any] | BaseException


def claim_token() -> str:
    """Return a token unique to one claim: host, process and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def execute(
    job_ids: list[uuid.UUID],
    ports: Ports,
    *,
    fill: FillWindow,
    in_order: bool = True,
    chunk: bool = False,
) -> list[Outcome]:
    """Claim the jobs of one message, run them, and record how each ended.

    A chunk (batch items) runs as one unit: one call of its type's chunk handler feeds the
    model's scheduler all its requests, and once it is done the pacer releases the batch's next
    chunk. A solo job runs with nothing else running in this process. ``in_order`` says the
    message came from its lane's main queue, so its jobs' publish times tell how far the lane
    has been read. ``fill`` is the pacer's, bound to this worker's publisher.
    """
    with GATE.shared(lambda: keeper_of_process(ports.store, ports.settings).holding(job_ids)):
        outcomes, claimed = _claim_and_run(job_ids, ports, in_order=in_order, solo=False)
    missed = [i for i in job_ids if i not in outcomes]
    if missed:
        outcomes.update(_unclaimed(missed, ports, in_order=in_order))
    dropped = [str(i) for i in job_ids if i not in outcomes]
    if dropped:
        # The ids, so that a duplicate message can be traced to the job it repeated.
        log.info(
            "%d of %d jobs not claimable; messages dropped: %s",
            len(dropped),
            len(job_ids),
            " ".join(dropped),
        )
    if chunk and claimed:
        fill(claimed[0].job.tenant_id)
    return [outcomes.get(i, Outcome.DROPPED) for i in job_ids]


def _unclaimed(
    job_ids: list[uuid.UUID], ports: Ports, *, in_order: bool
) -> dict[uuid.UUID, Outcome]:
    """Run the solo jobs among jobs the first claim left queued; defer the rest.

    A solo job is claimed only once nothing else runs here: if it kills the process, it was
    alone, and no neighbour (not even one waiting for its turn) dies with it. A job left queued
    for any other reason has a tenant at its running cap: its message goes back to the
    reconciler, to be published again shortly.
    """
    outcomes: dict[uuid.UUID, Outcome] = {}
    left = ports.store.unclaimed(job_ids)
    for job_id, _ in [r for r in left if r.solo]:
        with GATE.exclusive(lambda i=job_id: keeper_of_process().holding([i])):
            outcomes.update(_claim_and_run([job_id], ports, in_order=in_order, solo=True)[0])
    capped = [r.id for r in left if not r.solo]
    if capped:
        ports.store.defer(capped, CAPPED_RETRY_S)
        outcomes.update(dict.fromkeys(capped, Outcome.DEFERRED))
    return outcomes


def _claim_and_run(
    job_ids: list[uuid.UUID], ports: Ports, *, in_order: bool, solo: bool
) -> tuple[dict[uuid.UUID, Outcome], list[JobContext]]:
    if keeper_of_process(ports.store, ports.settings).stopping.is_set():
        # This worker is shutting down: the reconciler publishes the jobs again, for another.
        ports.store.defer(job_ids, 0.0)
        return dict.fromkeys(job_ids, Outcome.DEFERRED), []
    _preload(job_ids, ports)
    settings = ports.settings
    jobs = ports.store.claim(
        job_ids,
        claim_token(),
        lease_s=settings.lease_s,
        time_limits=jobtypes.time_limits(settings),
        default_limit_s=settings.generate_time_limit_s,
        running_cap=settings.tenant_max_running,
        solo=solo,
    )
    if not jobs:
        return {}, []
    metrics.claimed(jobs)
    contexts = [JobContext(job, ports) for job in jobs]
    keeper_of_process(ports.store, ports.settings).track(contexts, in_order=in_order)
    job_type = jobtypes.get(jobs[0].type)
    if len(contexts) > 1 and job_type.chunk_handler:
        return _run_chunk(contexts, job_type, ports), contexts
    return _run_side_by_side(contexts, ports), contexts


def _preload(job_ids: list[uuid.UUID], ports: Ports) -> None:
    """Import what these jobs' handlers need before they are claimed (``JobType.preload``).

    Their messages are held meanwhile, so the reconciler does not take them for lost. Once every
    type's modules are imported (a warm worker), this costs nothing, not even the read of types.
    """
    missing = {m for t in jobtypes.all_types() for m in t.preload if m not in sys.modules}
    if not missing:
        return
    wanted = {m for t in ports.store.types_of(job_ids) for m in jobtypes.get(t).preload}
    if wanted & missing:
        with keeper_of_process(ports.store, ports.settings).holding(job_ids):
            for module in sorted(wanted & missing):
                importlib.import_module(module)


def _run_chunk(
    contexts: list[JobContext], job_type: jobtypes.JobType, ports: Ports
) -> dict[uuid.UUID, Outcome]:
    """Run a chunk's items with one call of its chunk handler, and commit them together."""
    ran: dict[uuid.UUID, Ran] = {}
    valid, params = [], []
    for ctx in contexts:
        try:
            params.append(_params(ctx, job_type))
            valid.append(ctx)
        except InputError as exc:
            ran[ctx.job_id] = exc
    handler: Callable[..., list[Ran]] = job_type.resolve(job_type.chunk_handler)
    try:
        with job_fields(*(c.job for c in contexts)):
            results = handler(valid, params) if valid else []
    except BaseException as exc:  # the chunk as a whole failed: each item records it
        results = [exc] * len(valid)
    ran.update(zip((c.job_id for c in valid), results, strict=True))
    return _finish(contexts, [_settle(c, ran[c.job_id]) for c in contexts], ports)


def _settle(ctx: JobContext, ran: Ran) -> Outcome | dict[str, Any]:
    with job_fields(ctx.job):
        return settle(ctx, ran)


def _run_side_by_side(contexts: list[JobContext], ports: Ports) -> dict[uuid.UUID, Outcome]:
    """Run jobs on their own threads and commit their successes in waves, one transaction each.

    A job whose thread hangs cannot hold back the others: what finished is committed every
    ``COMMIT_WAVE_S``, and at the deadline the hung job is left to the lease keeper, which has
    ended it already; its thread is abandoned (and counted, if it stays stuck).
    """
    if len(contexts) == 1:
        return _finish(contexts, [run_handler(contexts[0])], ports)
    pool = ThreadPoolExecutor(min(len(contexts), ITEM_THREADS), thread_name_prefix="aigc-job")
    pending = {pool.submit(run_handler, c): c for c in contexts}
    outcomes: dict[uuid.UUID, Outcome] = {}
    while pending:
        done, _ = wait(pending, timeout=COMMIT_WAVE_S, return_when=ALL_COMPLETED)
        wave = [pending.pop(f) for f in done]
        outcomes.update(_finish(wave, [f.result() for f in done], ports))
        if pending and time.monotonic() > max(c.deadline for c in pending.values()):
            break
    for future, ctx in pending.items():
        outcomes[ctx.job_id] = Outcome.TIMED_OUT
        metrics.attempt_ended(ctx, Outcome.TIMED_OUT)
        future.add_done_callback(lambda _, c=ctx: keeper_of_process().untrack([c]))
    pool.shutdown(wait=False)
    return outcomes


def run_handler(ctx: JobContext) -> Outcome | dict[str, Any]:
    """Run one claimed job's handler; return its result, or the outcome already recorded."""
    with job_fields(ctx.job):
        try:
            job_type = jobtypes.get(ctx.job.type)
            ran: Ran = job_type.resolve(job_type.handler)(ctx, _params(ctx, job_type)) or {}
        except BaseException as exc:
            ran = exc
        return settle(ctx, ran)


def _params(ctx: JobContext, job_type: jobtypes.JobType) -> BaseModel:
    try:
        return job_type.params.model_validate(ctx.job.params)
    except ValidationError as exc:
        raise InputError(f"invalid params: {exc.errors()[0]['msg']}") from exc


def _finish(
    contexts: list[JobContext], ran: list[Outcome | dict[str, Any]], ports: Ports
) -> dict[uuid.UUID, Outcome]:
    """Record the successful jobs among ``contexts`` in one transaction, with their artifacts."""
    if not contexts:
        return {}
    results = {c.job_id: r for c, r in zip(contexts, ran, strict=True) if isinstance(r, dict)}
    ended = [c for c in contexts if c.job_id in results]
    artifacts = [a for c in ended for a in c.pending_artifacts]
    kept = [i for c in ended for i in c.recorded_artifacts]
    token = contexts[0].token
    try:
        stored = durably(
            ports.settings, lambda: ports.store.succeed_many(token, results, artifacts, kept=kept)
        )
    finally:
        keeper_of_process().untrack(contexts)
    done = {job.id for job in stored}
    outcomes = {}
    for ctx, outcome in zip(contexts, ran, strict=True):
        if isinstance(outcome, dict):
            # A job missing from `done` was taken over, or timed out meanwhile: its result goes.
            outcome = Outcome.SUCCEEDED if ctx.job_id in done else late(ctx)
            if outcome is Outcome.SUCCEEDED:
                ctx.discard_workdir()
        ctx.finished = True
        outcomes[ctx.job_id] = outcome
        metrics.attempt_ended(ctx, outcome)
    return outcomes
