"""The raw Celery baseline: an empty task over the same Redis, with a result backend."""

from __future__ import annotations

from celery import Celery

raw = Celery("raw", broker="redis://127.0.0.1:6379/11", backend="redis://127.0.0.1:6379/10")
raw.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="raw",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
celery = raw


@raw.task(name="raw.echo")
def echo() -> dict:
    """Return at once: the cost of Celery alone."""
    return {}
