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
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.errors import AigcError, InputError, JobTimeout
from shared.jobs import chunks, jobtypes
from shared.observe.logs import job_fields
from shared.types import FillWindow
from worker import metrics
from worker.context import JobContext, Ports
from worker.gate import GATE
from worker.lease import keeper_of_process
from worker.outcomes import Outcome, durably, late, settle

log = logging.getLogger(__name__)

ITEM_THREADS = 8  # threads for the items of a chunk whose job type has no chunk handler
CAPPED_RETRY_S = 1.0  # a job whose tenant runs its cap of jobs is offered again after this

Ran = dict[str, Any] | BaseException
# Runs a chunk's items in one call: (the chunk's context, their params) -> a result or error each.
ChunkHandler = Callable[[JobContext, list[Any]], list[Ran]]


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
    # A message names one job or one chunk (an older version's chunk message, several).
    outcomes = {
        ctx.job_id: _run_chunk(ctx, ports) if ctx.job.item_count else _run_job(ctx, ports)
        for ctx in contexts
    }
    return outcomes, contexts


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


def _run_chunk(ctx: JobContext, ports: Ports) -> Outcome:
    """Run a batch's chunk: decode its items, one call of its chunk handler, one commit.

    Its params were validated at submit: they become typed params without a second check.
    Per item this costs a decode, the model's work and an encode, and nothing else.
    """
    job_type = jobtypes.get(ctx.job.type)
    items = chunks.decode_items(ctx.job.items or b"[]")
    params = [job_type.params.model_construct(**p) for _, p in items]
    try:
        with job_fields(ctx.job):
            ran: Any = _chunk_handler(job_type)(ctx, params)
            _log_crashes(ctx, ran)
    except BaseException as exc:  # the chunk as a whole failed: retried, split or ended
        ran = exc
    settled = settle(ctx, ran)
    if not isinstance(settled, list):
        return _ended(ctx, settled)
    lines, failed = chunks.result_lines(items, settled)
    write = partial(ports.store.succeed_chunk, ctx.token, ctx.job_id, lines, failed)
    if not _committed(
        ctx, ports, lambda: write(ctx.pending_artifacts, kept=ctx.recorded_artifacts)
    ):
        return _ended(ctx, late(ctx))
    return _ended(ctx, Outcome.SUCCEEDED, failed)


def _log_crashes(ctx: JobContext, ran: list[Ran]) -> None:
    """Log the items whose handler crashed (not an error of ours): each fails alone."""
    for index, outcome in enumerate(ran):
        if isinstance(outcome, BaseException) and not isinstance(outcome, AigcError):
            log.error("job %s: handler crashed on item %d", ctx.job_id, index, exc_info=outcome)


def _chunk_handler(job_type: jobtypes.JobType) -> ChunkHandler:
    """Return the type's chunk handler, or one that runs its items on threads of their own."""
    if job_type.chunk_handler:
        return job_type.resolve(job_type.chunk_handler)
    handler = job_type.resolve(job_type.handler)
    return lambda ctx, params: _side_by_side(handler, ctx, params)


def _side_by_side(handler: Callable[..., Any], ctx: JobContext, params: list[Any]) -> list[Ran]:
    """Run a chunk's items with the plain handler, on threads; each item fails alone.

    An item that hangs holds the chunk only until its deadline: the chunk then times out (and
    is split), and the hung thread is abandoned.
    """
    pool = ThreadPoolExecutor(min(len(params), ITEM_THREADS), thread_name_prefix="aigc-item")
    futures = [pool.submit(_attempt, handler, ctx, p) for p in params]
    _, pending = wait(futures, timeout=max(ctx.deadline - time.monotonic(), 0.0))
    pool.shutdown(wait=False)
    if pending:
        raise JobTimeout("the chunk ran past its time limit")
    return [f.result() for f in futures]


def _attempt(handler: Callable[..., Any], ctx: JobContext, params: Any) -> Ran:
    try:
        return handler(ctx, params) or {}
    except Exception as exc:
        return exc


def _run_job(ctx: JobContext, ports: Ports) -> Outcome:
    """Run one job with its handler and record how it ended."""
    settled = _run_handler(ctx)
    if not isinstance(settled, dict):
        return _ended(ctx, settled)
    write = partial(ports.store.succeed, ctx.token, ctx.job_id, settled)
    if not _committed(
        ctx, ports, lambda: write(ctx.pending_artifacts, kept=ctx.recorded_artifacts)
    ):
        return _ended(ctx, late(ctx))  # taken over, or timed out meanwhile: its result goes
    ctx.discard_workdir()
    return _ended(ctx, Outcome.SUCCEEDED)


def _committed(ctx: JobContext, ports: Ports, write: Callable[[], object]) -> bool:
    """Run a success's write, retrying a blip; return whether the claim still held the row."""
    try:
        return bool(durably(ports.settings, write))
    finally:
        keeper_of_process().untrack([ctx])  # whatever happens, its thread is done with it


def _ended(ctx: JobContext, outcome: Outcome, failed_items: int = 0) -> Outcome:
    """Count how an attempt ended (once) and let the keeper forget it."""
    keeper_of_process().untrack([ctx])
    ctx.finished = True
    metrics.attempt_ended(ctx, outcome, failed_items)
    return outcome


def _run_handler(ctx: JobContext) -> Outcome | dict[str, Any]:
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
