"""The raw Celery baseline: an empty task over the same Redis, with a result backend."""

from __future__ import annotations

from celery import Celery

from bench.stack import RAW_BACKEND_DB, RAW_BROKER_DB, REDIS

QUEUE = "raw"  # the raw worker's queue
PUBLISH_ONLY = "raw-publish-only"  # nobody reads it: the publish-rate baseline, purged after

raw = Celery("raw", broker=f"{REDIS}/{RAW_BROKER_DB}", backend=f"{REDIS}/{RAW_BACKEND_DB}")
raw.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
celery = raw


@raw.task(name="raw.echo")
def echo() -> dict:
    """Return at once: the cost of Celery alone."""
    return {}
