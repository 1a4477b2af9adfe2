"""The Celery application workers run: ``celery -A worker.app worker``.

Nothing here imports TensorFlow or Keras: the model code is imported by the process that runs a
job, after the prefork pool has forked, never by the parent.
"""

from __future__ import annotations

import logging
import threading
import uuid
from functools import lru_cache

from celery.signals import worker_process_init

from shared.celery_app import RECONCILE_TASK, RUN_CHUNK_TASK, RUN_JOB_TASK, make_celery
from shared.config import get_settings
from shared.reconciler import reconcile_once
from shared.services import Services, build_services
from worker.runner import execute

log = logging.getLogger(__name__)

celery = make_celery(get_settings())


@lru_cache(maxsize=1)
def services() -> Services:
    """Return this process's services, created on first use (after any fork)."""
    return build_services(get_settings())


@worker_process_init.connect
def _warm_models(**_: object) -> None:
    """Load AIGC_WARM_MODELS in the background, so the child reports ready within Celery's 4 s."""
    refs = get_settings().warm_models
    if refs:
        from worker.model_cache import model_cache

        threading.Thread(
            target=lambda: model_cache(services()).warm(refs), name="warm-models", daemon=True
        ).start()


@celery.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: str) -> str:
    """Run the job named by the message; the message carries nothing but its id."""
    outcomes = execute(_parse_ids([job_id]), services())
    return outcomes[0].value if outcomes else "dropped"


@celery.task(name=RUN_CHUNK_TASK, ignore_result=True)
def run_chunk(job_ids: list[str]) -> dict[str, int]:
    """Run the jobs of one chunk together (batch items); the message carries only their ids."""
    outcomes = execute(_parse_ids(job_ids), services())
    return {o.value: outcomes.count(o) for o in set(outcomes)}


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
    return vars(reconcile_once(svc.store, svc.publisher, svc.settings.republish_after_s))
