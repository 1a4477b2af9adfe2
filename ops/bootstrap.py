"""Trains the default models on the built-in data the first time the stack starts."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from shared.config import Settings
from shared.jobs.schemas import JobCreate
from shared.jobs.status import TERMINAL
from shared.jobs.submit import build_job, submit
from shared.services import Services, build_services

log = logging.getLogger("aigc.bootstrap")

# Sized to finish in a few minutes on 2 CPU cores (see the README's quality table).
DEFAULT_JOBS: dict[str, dict[str, Any]] = {
    "text": {
        "type": "text.train",
        "params": {"preset": "small", "epochs": 3, "max_chars": 1_000_000},
    },
    "image": {
        "type": "image.train",
        "params": {"preset": "default", "epochs": 20, "batch_size": 32},
    },
}


def default_jobs(settings: Settings) -> list[JobCreate]:
    """Return the training requests of the default text and image models."""
    names = {"text": settings.default_text_model, "image": settings.default_image_model}
    return [JobCreate(model=names[kind], **body) for kind, body in DEFAULT_JOBS.items()]


def submit_defaults(svc: Services) -> list[str]:
    """Submit the default training jobs if no model exists and none is training; return ids."""
    if not svc.registry.is_empty():
        return []
    busy = {
        j.model
        for j in svc.store.page(tenant_id=None, status=None, type_=None, limit=100, cursor=None)[0]
        if j.type.endswith(".train") and j.status not in TERMINAL
    }
    jobs = [
        build_job(
            body,
            settings=svc.settings,
        )
        for body in default_jobs(svc.settings)
        if body.model not in busy
    ]
    return [str(job.id) for job in submit(svc, jobs)] if jobs else []


def bootstrap_default_models(settings: Settings, stop: threading.Event) -> None:
    """Submit the default trainings and log their progress until both end."""
    svc = build_services(settings)
    ids = submit_defaults(svc)
    if not ids:
        return
    log.info("first start: training the default models (%s); follow with `aigc jobs`", ids)
    last: dict[str, str] = {}
    while ids and not stop.wait(5):
        for job_id in list(ids):
            job = svc.store.get_public(uuid.UUID(job_id)) or {}
            line = _describe(job)
            if line != last.get(job_id):
                log.info("%s: %s", job.get("model"), line)
                last[job_id] = line
            if job.get("status") in TERMINAL:
                ids.remove(job_id)


def _describe(job: dict[str, Any]) -> str:
    from ops.progress import describe, fraction

    return f"{describe(job)} ({fraction(job):.0%})" if job else "unknown"
