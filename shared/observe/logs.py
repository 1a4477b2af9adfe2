"""Log lines: text by default, or one JSON object per line (``AIGC_LOG_FORMAT=json``).

While a job runs, every line its thread writes carries ``job_id``, ``batch_id``, ``tenant`` (the
owning tenant's id; null for the system's own jobs) and ``attempt``: the worker sets them in a
context variable around the job, and a filter on each handler copies them onto the record. A
batch's chunk is named by its own row (``job_id``) and its batch. Lines of the model-owner
threads, which serve many jobs at once, name none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from shared.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(threadName)s %(message)s"
RENAMED = {"levelname": "level", "name": "logger", "threadName": "thread", "process": "pid"}

_JOB: ContextVar[dict[str, Any] | None] = ContextVar("aigc_job_fields", default=None)


class JobFields(logging.Filter):
    """Copies the running job's fields onto every record its handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields (never over ones the record carries already); keep every record."""
        for key, value in (_JOB.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def json_formatter() -> logging.Formatter:
    """Return the formatter of JSON lines: time, level, logger, pid, thread, message, extras."""
    return JsonFormatter(JSON_FIELDS, rename_fields=RENAMED, timestamp="time")


def use_json(logger: logging.Logger) -> None:
    """Make every handler of ``logger`` write JSON lines that carry the running job's fields."""
    for handler in logger.handlers:
        handler.setFormatter(json_formatter())
        if not any(isinstance(f, JobFields) for f in handler.filters):
            handler.addFilter(JobFields())


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Send this process's records to stderr, as text or as JSON lines (``log_format``)."""
    if settings.log_format == "json":
        logging.basicConfig(level=level, handlers=[logging.StreamHandler()], force=True)
        use_json(logging.getLogger())
        logging.captureWarnings(True)  # a warning is a line like any other, not raw text
    else:
        logging.basicConfig(level=level, format=TEXT_FORMAT)


@contextmanager
def job_fields(job: Any) -> Iterator[None]:
    """Name ``job`` (a row with id, batch_id, tenant_id, attempts) on every line logged within."""
    fields = {
        "job_id": str(job.id),
        "batch_id": str(job.batch_id) if job.batch_id else None,
        "tenant": str(job.tenant_id) if job.tenant_id else None,
        "attempt": job.attempts,
    }
    token = _JOB.set(fields)
    try:
        yield
    finally:
        _JOB.reset(token)
