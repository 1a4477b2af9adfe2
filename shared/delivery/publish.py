"""Hands committed jobs to the broker; the message carries job ids and nothing else."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from amqp.exceptions import ChannelError
from celery import Celery

from shared.config import Settings
from shared.delivery import lanes, wire
from shared.delivery.celery_app import RUN_CHUNK_TASK, RUN_JOB_TASK
from shared.delivery.lanes import lane_of
from shared.jobs import jobtypes
from shared.tables import Job
from shared.types import MarkPublished

log = logging.getLogger(__name__)

Message = tuple[str, Any, str, str, list[uuid.UUID]]  # task, argument, queue, job type, job ids


class Publisher:
    """Sends ``aigc.run_job(id)``, or for a batch's chunk ``aigc.run_chunk([id])``, to its lane.

    A failed publish is logged, never raised: the rows are committed, so the reconciler publishes
    them later. After a failure the publisher stops trying for ``publish_timeout_s``, so a broker
    outage costs submits no time.
    """

    def __init__(self, celery: Celery, settings: Settings, mark_published: MarkPublished) -> None:
        self.celery = celery
        self.settings = settings
        self.mark_published = mark_published  # the job store's: stamps rows, or clears stamps
        self._down_until = 0.0
        # On Redis, messages go straight onto the queue's list (shared.delivery.wire).
        self._redis = (
            redis.Redis.from_url(
                settings.broker_url,
                socket_timeout=settings.publish_timeout_s,
                socket_connect_timeout=settings.publish_timeout_s,
            )
            if settings.broker_kind == "redis"
            else None
        )

    def publish(self, jobs: Sequence[Job], *, stamped: bool, redo: bool = False) -> int:
        """Publish one message per job or chunk; return how many reached the broker.

        ``stamped`` jobs were recorded as published when they were inserted (the API's hot
        path): only a failure is written back. Others are stamped now, before they are sent.
        ``redo`` sends them to their lane's redo queue, which its workers read first.
        """
        messages = [_message(j, _queue(lane_of(j), redo)) for j in jobs]
        return self._send_all(messages, stamped=stamped)

    def _send_all(self, messages: list[Message], *, stamped: bool) -> int:
        ids = [i for *_, job_ids in messages for i in job_ids]
        if time.monotonic() < self._down_until:
            if stamped:
                self._unstamp(ids)
            return 0
        if not stamped and not self._stamp(ids):
            return 0
        sent: list[uuid.UUID] = []
        try:
            self._send(messages, sent)
        except Exception as exc:
            self._down_until = time.monotonic() + self.settings.publish_timeout_s
            log.warning("publish failed after %d jobs: %s", len(sent), exc)
        done = set(sent)
        self._unstamp([i for i in ids if i not in done])
        return len(sent)

    def _stamp(self, ids: list[uuid.UUID]) -> bool:
        # Before the send, as the API stamps at insert: a worker may claim a job the moment its
        # message lands, and a stamp written after that claim would miss the row (its queue
        # wait and its lane's watermark are read from it).
        try:
            self.mark_published(ids)
        except Exception as exc:
            log.warning("could not stamp %d jobs as published: %s", len(ids), exc)
            return False
        return True

    def _unstamp(self, ids: list[uuid.UUID]) -> None:
        if not ids:
            return
        try:  # due at once for the reconciler, not after the republish delay
            self.mark_published(ids, published=False)
        except Exception as exc:
            log.warning("could not record %d unsent jobs: %s", len(ids), exc)

    def _send(self, messages: list[Message], sent: list[uuid.UUID]) -> None:
        if self._redis is not None:
            pipe = self._redis.pipeline(transaction=False)
            for task, arg, queue, type_name, _ in messages:
                pipe.lpush(queue, wire.envelope(task, arg, queue, *self._limits(type_name)))
            pipe.execute()
            sent += [i for *_, ids in messages for i in ids]
            return
        with self.celery.producer_or_acquire() as producer:
            for task, arg, queue, type_name, ids in messages:
                hard, soft = self._limits(type_name)
                self.celery.send_task(
                    task,
                    args=[arg],
                    queue=queue,
                    producer=producer,
                    soft_time_limit=soft,
                    time_limit=hard,
                )
                sent += ids

    def _limits(self, type_name: str) -> tuple[float, float]:
        """Return Celery's hard and soft time limits for a job type's messages.

        They back up the job's own deadline: a prefork child that hangs in C code past it is
        killed; the thread pool ignores them.
        """
        limit = jobtypes.get(type_name).limit_s(self.settings)
        grace = self.settings.stuck_grace_s
        return limit + 2 * grace, limit + grace

    def queue_depths(self, queues: Sequence[str]) -> dict[str, int | None]:
        """Return how many messages wait in each queue (None: unknown); one round trip on Redis."""
        if self._redis is None:
            return {queue: self.queue_depth(queue) for queue in queues}
        try:
            pipe = self._redis.pipeline(transaction=False)
            for queue in queues:
                pipe.llen(queue)
            return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))
        except redis.RedisError as exc:
            log.debug("queue depths unknown: %s", exc)
            return dict.fromkeys(queues)

    def queue_depth(self, queue: str) -> int | None:
        """Return how many messages wait in a queue, or None if the broker cannot say."""
        try:
            with self.celery.connection_for_read() as conn:
                return int(conn.default_channel.queue_declare(queue, passive=True).message_count)
        except ChannelError as exc:
            if str(exc.reply_code) == "404":  # kombu sends the code as a string
                return 0  # Redis drops an empty list: no queue, no messages
            log.debug("queue depth of %s unknown: %s", queue, exc)
            return None
        except Exception as exc:
            log.debug("queue depth of %s unknown: %s", queue, exc)
            return None


def _message(job: Job, queue: str) -> Message:
    if job.batch_id is not None:
        return RUN_CHUNK_TASK, [str(job.id)], queue, job.type, [job.id]
    return RUN_JOB_TASK, str(job.id), queue, job.type, [job.id]


def _queue(lane: str, redo: bool) -> str:
    return lanes.redo(lane) if redo else lane
