"""Row 10: the CPU of one publish, kombu's ``send_task`` against the project's lean publisher.

Both go through ``shared.delivery.publish.Publisher.publish``, one job per call as the API
publishes: on Redis it writes the Celery envelope (``shared.delivery.wire``) with one LPUSH; a
Publisher whose settings name another broker takes its kombu path instead (``send_task`` on the
same Celery app, so over the same Redis). Run while no worker reads the lane; the lane is purged
afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench import cpu
from bench.e2e import NOOP
from shared.config import Settings
from shared.delivery.lanes import lane_of
from shared.delivery.publish import Publisher
from shared.jobs.schemas import JobCreate
from shared.jobs.submit import build_job

WARMUP = 200  # the first kombu publishes declare the queue and its binding


def _jobs(settings: Settings, count: int) -> list[Any]:
    jobs = [build_job(JobCreate(type=NOOP), settings=settings) for _ in range(count)]
    for job in jobs:
        job.id = uuid.uuid4()  # never stored: a successful stamped publish writes nothing
    return jobs


def _measure(publisher: Publisher, jobs: list[Any], redis_pid: int) -> dict[str, Any]:
    for job in jobs[:WARMUP]:
        publisher.publish([job], stamped=True)
    measured = jobs[WARMUP:]
    with cpu.Meter({"redis": redis_pid}) as meter:
        sent = sum(publisher.publish([job], stamped=True) for job in measured)
    if sent != len(measured):
        raise RuntimeError(f"only {sent} of {len(measured)} publishes reached Redis")
    return {"messages": len(measured), "cpu": meter.per_job(len(measured))}


def publish_cpu(publisher: Publisher, redis_pid: int, messages: int) -> dict[str, Any]:
    """Return the client's and Redis's CPU-ms per message of both publish paths."""
    celery = publisher.celery
    jobs = _jobs(publisher.settings, messages + WARMUP)
    kombu_settings = publisher.settings.model_copy(update={"broker_url": "amqp://kombu-path"})
    kombu = Publisher(celery, kombu_settings, publisher.mark_published)
    try:
        return {
            "lean": _measure(publisher, jobs, redis_pid),
            "kombu": _measure(kombu, jobs, redis_pid),
        }
    finally:
        with celery.connection_for_write() as conn:
            conn.default_channel.queue_purge(lane_of(jobs[0]))
