"""Trains the default models on the built-in data the first time the stack starts.

What each kind trains, and in which order, is its entry's ``bootstrap`` (shared.models.kinds).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from shared.config import Settings
from shared.delivery.publish import Publisher
from shared.jobs.schemas import JobCreate
from shared.jobs.status import TERMINAL
from shared.jobs.store import JobStore
from shared.jobs.submit import build_job, submit
from shared.models import kinds
from shared.models.registry import ModelRegistry

log = logging.getLogger("aigc.bootstrap")

# The longest a kind's default training waits for the previous kind's first version.
FIRST_VERSION_WAIT_S = 120.0
POLL_S = 1.0


def default_jobs(settings: Settings) -> list[JobCreate]:
    """Return the training requests of the kinds' default models, in the kinds' order."""
    return [
        JobCreate(type=kind.bootstrap.job_type, model=name, params=dict(kind.bootstrap.params))
        for kind in kinds.all_kinds()
        if kind.bootstrap is not None and (name := kind.default_model(settings))
    ]


def bootstrap_default_models(
    store: JobStore,
    publisher: Publisher,
    registry: ModelRegistry,
    settings: Settings,
    stop: threading.Event,
) -> None:
    """Submit the default trainings one after another, and log their progress until both end.

    Each one after the first waits for the previous model's first version (or its job's end),
    so the first model a new user can try trains alone; then they train side by side.
    """
    if not registry.is_empty():
        return
    busy = _training_models(store)
    ids: list[str] = []
    for body in default_jobs(settings):
        if ids:
            _wait_first_version(store, ids[-1], stop)
        if body.model not in busy and not stop.is_set():
            (job,) = submit(store, publisher, [build_job(body, settings=settings)])
            ids.append(str(job.id))
            log.info(
                "first start: training %s (job %s); follow with `aigc jobs`", body.model, job.id
            )
    _follow(store, ids, stop)


def _training_models(store: JobStore) -> set[str]:
    """Return the models a training job not yet ended is training (after a restart)."""
    jobs = store.page(tenant_id=None, status=None, type_=None, limit=100, cursor=None)[0]
    return {j.model for j in jobs if j.type.endswith(".train") and j.status not in TERMINAL}


def _wait_first_version(store: JobStore, job_id: str, stop: threading.Event) -> None:
    """Wait until a training job has registered a version or ended, for a bounded time."""
    deadline = time.monotonic() + FIRST_VERSION_WAIT_S
    while time.monotonic() < deadline and not stop.wait(POLL_S):
        job = store.get_public(uuid.UUID(job_id)) or {}
        if job.get("status") in TERMINAL or (job.get("progress") or {}).get("versions"):
            return


def _follow(store: JobStore, ids: list[str], stop: threading.Event) -> None:
    """Log each training's progress when it changes, until all have ended."""
    last: dict[str, str] = {}
    while ids and not stop.wait(5):
        for job_id in list(ids):
            job = store.get_public(uuid.UUID(job_id)) or {}
            line = _describe(job)
            if line != last.get(job_id):
                log.info("%s: %s", job.get("model"), line)
                last[job_id] = line
            if job.get("status") in TERMINAL:
                ids.remove(job_id)


def _describe(job: dict[str, Any]) -> str:
    from ops.progress import describe, fraction

    return f"{describe(job)} ({fraction(job):.0%})" if job else "unknown"
