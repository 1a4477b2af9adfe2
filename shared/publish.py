"""Hands committed jobs to the broker; the message carries the job id and nothing else."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from celery import Celery

from shared import jobtypes
from shared.celery_app import RUN_JOB_TASK
from shared.config import Settings
from shared.jobs import JobStore
from shared.models import Job

log = logging.getLogger(__name__)


class Publisher:
    """Sends ``aigc.run_job(job_id)`` to the queue of each job's type, with its time limits."""

    def __init__(self, celery: Celery, store: JobStore, settings: Settings) -> None:
        self.celery = celery
        self.store = store
        self.settings = settings

    def publish(self, jobs: Sequence[Job]) -> int:
        """Publish jobs that are already committed; return how many reached the broker.

        A failure is logged, not raised: the job row is safe and the reconciler re-publishes it.
        """
        sent: list[uuid.UUID] = []
        try:
            with self.celery.producer_or_acquire() as producer:
                for job in jobs:
                    self._send(job, producer)
                    sent.append(job.id)
        except Exception as exc:
            log.warning("publish failed after %d of %d jobs: %s", len(sent), len(jobs), exc)
        try:
            self.store.mark_published(sent)
        except Exception as exc:
            log.warning("could not record publish time: %s", exc)
        return len(sent)

    def _send(self, job: Job, producer: object) -> None:
        job_type = jobtypes.get(job.type)
        hard = self._time_limit(job_type.queue)
        self.celery.send_task(
            RUN_JOB_TASK,
            args=[str(job.id)],
            queue=job_type.queue,
            soft_time_limit=hard - 5,
            time_limit=hard,
            producer=producer,
        )

    def _time_limit(self, queue: str) -> int:
        if queue == "train":
            return self.settings.train_time_limit_s
        return self.settings.generate_time_limit_s
