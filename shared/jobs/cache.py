"""A short-lived status snapshot of each job in Redis, in front of the database."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"succeeded", "failed", "canceled"})


class StatusCache:
    """Writes and reads job snapshots; a Redis outage falls back to the database."""

    def __init__(self, url: str, ttl_s: int) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._ttl_s = ttl_s

    @staticmethod
    def key(job_id: str) -> str:
        """Return the Redis key of a job's snapshot."""
        return f"aigc:job:{job_id}"

    def put_many(self, snapshots: dict[str, dict[str, Any]]) -> None:
        """Store snapshots and announce each on its job's channel, in one round trip."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for job_id, snapshot in snapshots.items():
                data = json.dumps(snapshot, default=str)
                pipe.setex(self.key(job_id), self._ttl_s, data)
                pipe.publish(f"aigc:events:{job_id}", data)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("status cache write failed for %d jobs: %s", len(snapshots), exc)

    def forget(self, job_ids: list[str]) -> None:
        """Drop snapshots after a bulk change, so readers go to the database."""
        try:
            for start in range(0, len(job_ids), 1000):
                self._redis.delete(*[self.key(i) for i in job_ids[start : start + 1000]])
        except redis.RedisError as exc:
            log.warning("status cache delete failed: %s", exc)

    def wait(
        self, job_id: str, deadline: float, read: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Return ``read()`` once the job's events show it ended, or at the deadline."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(f"aigc:events:{job_id}")
            job = read()  # after subscribing, so no event can slip between read and listen
            while job is not None and job["status"] not in TERMINAL_STATES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                message = pubsub.get_message(timeout=min(left, 1.0))
                if message is not None:
                    job = json.loads(message["data"])
            return job
        except redis.RedisError as exc:
            log.warning("status wait failed for %s: %s", job_id, exc)
            return read()
        finally:
            pubsub.close()

    def get(self, job_id: str) -> dict[str, Any] | None:
        """Return the cached snapshot, or None when absent or Redis is down."""
        try:
            raw = self._redis.get(self.key(job_id))
        except redis.RedisError as exc:
            log.warning("status cache read failed for %s: %s", job_id, exc)
            return None
        return json.loads(raw) if raw else None
