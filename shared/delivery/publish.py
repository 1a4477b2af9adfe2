"""Hands committed jobs to the broker; the message carries the job id and nothing else."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from celery import Celery

from shared.config import Settings
from shared.delivery.celery_app import RUN_CHUNK_TASK, RUN_JOB_TASK
from shared.jobs import jobtypes
from shared.jobs.store import JobStore
from shared.tables import Job

log = logging.getLogger(__name__)


class Publisher:
    """Sends ``aigc.run_job(job_id)`` to the queue of each job's type, with its time limits."""

    def __init__(self, celery: Celery, store: JobStore, settings: Settings) -> None:
        self.celery = celery
        self.store = store
        self.settings = settings

    def publish(self, jobs: Sequence[Job], *, record: bool = True) -> int:
        """Publish one message per committed job; return how many reached the broker.

        A failure is logged, not raised: the job row is safe and the reconciler re-publishes it.
        """
        messages = [(RUN_JOB_TASK, str(j.id), jobtypes.get(j.type).queue, [j.id]) for j in jobs]
        return self._send_all(messages, record=record)

    def publish_chunks(
        self, job_ids: Sequence[uuid.UUID], queue: str, *, record: bool = True
    ) -> int:
        """Publish committed jobs as chunk messages of up to ``batch_chunk_size`` ids each."""
        size = self.settings.batch_chunk_size
        chunks = [list(job_ids[i : i + size]) for i in range(0, len(job_ids), size)]
        messages = [(RUN_CHUNK_TASK, [str(i) for i in c], queue, c) for c in chunks]
        return self._send_all(messages, record=record)

    def _send_all(
        self, messages: list[tuple[str, Any, str, list[uuid.UUID]]], *, record: bool
    ) -> int:
        sent: list[uuid.UUID] = []
        try:
            with self.celery.producer_or_acquire() as producer:
                for task, arg, queue, ids in messages:
                    hard = self._time_limit(queue)
                    self.celery.send_task(
                        task,
                        args=[arg],
                        queue=queue,
                        producer=producer,
                        soft_time_limit=hard - 5,
                        time_limit=hard,
                    )
                    sent += ids
        except Exception as exc:
            log.warning("publish failed after %d jobs: %s", len(sent), exc)
        if not record:
            return len(sent)  # the rows were stamped published when they were created
        try:
            self.store.mark_published(sent)
        except Exception as exc:
            log.warning("could not record publish time: %s", exc)
        return len(sent)

    def queue_depth(self, queue: str) -> int | None:
        """Return how many messages wait in a queue, or None if the broker cannot say."""
        try:
            with self.celery.connection_for_read() as conn:
                return int(conn.default_channel.queue_declare(queue, passive=True).message_count)
        except Exception as exc:
            log.debug("queue depth of %s unknown: %s", queue, exc)
            return None

    def _time_limit(self, queue: str) -> int:
        if queue == "train":
            return self.settings.train_time_limit_s
        return self.settings.generate_time_limit_s
