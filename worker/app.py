"""The Celery application workers run: ``celery -A worker.app worker``.

Nothing here imports TensorFlow or Keras: the model code is imported by the process that runs a
job, after the prefork pool has forked, never by the parent.
"""

from __future__ import annotations

import importlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from celery import Task, bootsteps
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_process_init,
    worker_ready,
    worker_shutting_down,
)
from celery.worker import state

from shared.config import get_settings
from shared.delivery import pacer
from shared.delivery.celery_app import RECONCILE_TASK, RUN_CHUNK_TASK, RUN_JOB_TASK, make_celery
from shared.delivery.lanes import REDO
from shared.delivery.reconciler import reconcile_once
from shared.observe.logs import configure_logging, use_json
from shared.services import Services, build_services
from worker import presence
from worker.context import Ports
from worker.lease import keeper_of_process, restart_when_idle, stop_gracefully
from worker.runner import execute

log = logging.getLogger(__name__)

celery = make_celery(get_settings())
if get_settings().log_format == "json":
    # Now, before Celery starts: its first warnings (running as root, say) are JSON lines too,
    # and Celery leaves a root logger that has a handler as it is.
    configure_logging(get_settings())


ROOM_CHECK_S = 0.02  # how soon a worker's event loop sees a freed job slot


class TakeOnlyWhatCanRun(bootsteps.StartStopStep):
    """Take a message only when a job slot is free to run it.

    A message a busy worker holds is invisible to the broker, and the reconciler would take it
    for lost: an empty lane with a stale queued job means a lost message only if no worker keeps
    one back. It also lets an idle worker, not a busy one, take the next job. (Celery's own
    ``worker_disable_prefetch`` does this for Redis only; this step serves every transport.)
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, c: Any) -> None:
        """Wrap the channel's QoS check with a count of the worker's unfinished requests."""
        qos = c.task_consumer.channel.qos
        can_consume = qos.can_consume
        qos.can_consume = lambda: (
            len(state.reserved_requests) < c.pool.num_processes and (can_consume())
        )
        if c.hub is not None:
            # The event loop looks for room only when it wakes, and a job finishing on a pool
            # thread does not wake it: a short tick keeps a freed slot from idling for a second.
            c.hub.call_repeatedly(ROOM_CHECK_S, lambda: None)


celery.steps["consumer"].add(TakeOnlyWhatCanRun)


@lru_cache(maxsize=1)
def services() -> Services:
    """Return this process's services, created on first use (after any fork)."""
    settings = get_settings()
    # Job threads, plus the lease keeper, the pacer and a chunk's finishing writes.
    return build_services(settings, threads=settings.generate_threads + 4)


@lru_cache(maxsize=1)
def ports() -> Ports:
    """Return what the runner and the jobs' contexts use of this process's services."""
    svc = services()
    return Ports(svc.settings, svc.store, svc.artifacts, svc.registry, svc.streams, _use_model)


@contextmanager
def _use_model(ref: str | None, kind: str) -> Iterator[Any]:
    """Yield a model from this process's cache, kept loaded while it is used."""
    from worker.model_cache import model_cache  # Keras loads on first use, not at import

    svc = services()
    with model_cache(svc.registry, svc.artifacts, svc.settings).use(ref, kind) as loaded:
        yield loaded


def _fill(tenant_id: uuid.UUID | None) -> int:
    """Release the next chunks of a tenant's batches (after a chunk ends here)."""
    svc = services()
    return pacer.fill(svc.sessions, svc.publisher, svc.settings, tenant_id)


@worker_process_init.connect
def _prefork_child_ready(**_: object) -> None:
    """Warm up a prefork child: this process runs the jobs, after the fork."""
    _start_warmup()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_logs(logger: logging.Logger, **_: object) -> None:
    """Turn Celery's handlers to JSON lines when AIGC_LOG_FORMAT=json (children inherit them)."""
    if get_settings().log_format == "json":
        use_json(logger)


@worker_ready.connect
def _worker_ready(sender: Any = None, **_: object) -> None:
    """Serve the worker's metrics and announce it; prepare a thread-pool worker to run jobs.

    A thread-pool worker runs its jobs in its own process (nothing forks), and its lease keeper
    counts them; a prefork parent counts the messages its children run (one job each, but a
    chunk of batch items).
    """
    pool = getattr(sender, "pool", None)
    running: Callable[[], int] = _messages_running
    if pool is not None and "prefork" not in type(pool).__module__:
        _start_warmup()
        keeper = keeper_of_process(services().store, services().settings)
        # A quarter of the job threads stuck in code that ignores its deadline: start afresh.
        keeper.stuck_limit = max(1, int(getattr(pool, "limit", 1) or 1) // 4)
        keeper.on_stuck = lambda: restart_when_idle(keeper)
        running = keeper.healthy_running
    presence.start(sender, get_settings(), running)


@worker_shutting_down.connect
def _hand_back_at_the_grace(**_: object) -> None:
    """On SIGTERM, let running jobs finish within the stop grace, then hand back the rest."""
    stop_gracefully(get_settings().stop_grace_s)


def _messages_running() -> int:
    return len(state.active_requests)


def _start_warmup() -> None:
    # In the background, so a prefork child still reports ready within Celery's 4 s.
    threading.Thread(target=_warmup, name="aigc-warmup", daemon=True).start()


def _warmup() -> None:
    """Import Keras and the model code, then load AIGC_WARM_MODELS, before the first job."""
    try:
        # Imports Keras and its backend once, off the path of the first job.
        if get_settings().warmup_imports:
            for module in ("worker.ml.decode", "worker.ml.image", "worker.handlers.text"):
                importlib.import_module(module)

        refs = get_settings().warm_models
        if refs:
            from worker.model_cache import model_cache

            svc = services()
            model_cache(svc.registry, svc.artifacts, svc.settings).warm(refs)
    except Exception:
        log.exception("warm-up failed; models will load on first use")


@celery.task(name=RUN_JOB_TASK, ignore_result=True, bind=True)
def run_job(self: Task, job_id: str) -> str:
    """Run the job named by the message; the message carries nothing but its id."""
    outcomes = execute(_parse_ids([job_id]), ports(), fill=_fill, in_order=_in_order(self))
    return outcomes[0].value if outcomes else "dropped"


@celery.task(name=RUN_CHUNK_TASK, ignore_result=True, bind=True)
def run_chunk(self: Task, job_ids: list[str]) -> dict[str, int]:
    """Run a batch's chunk; the message carries only its id (an older version's, item ids)."""
    outcomes = execute(
        _parse_ids(job_ids), ports(), fill=_fill, in_order=_in_order(self), chunk=True
    )
    return {o.value: outcomes.count(o) for o in set(outcomes)}


def _in_order(task: Task) -> bool:
    # Whether the message came from a lane itself (read in publish order), not its redo queue.
    queue = (task.request.delivery_info or {}).get("routing_key") or ""
    return not queue.endswith(REDO)


def _parse_ids(raw: list[str]) -> list[uuid.UUID]:
    ids = []
    for value in raw if isinstance(raw, list) else []:
        try:
            ids.append(uuid.UUID(value))
        except (ValueError, TypeError, AttributeError):
            log.error("dropping a malformed job id: %r", value)
    return ids


@celery.task(name=RECONCILE_TASK, ignore_result=True)
def reconcile() -> dict[str, int]:
    """Run one reconciler pass (scheduled by celery beat)."""
    svc = services()
    return vars(reconcile_once(svc.store, svc.publisher, svc.settings))
