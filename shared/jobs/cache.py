"""A short-lived status snapshot of each job in Redis, in front of the database.

Every snapshot carries the job row's ``version``; a write never replaces a newer snapshot, so a
slow writer cannot make the cache show an older state than the database has. A write that fails
(Redis is down) leaves the job's key marked dirty: it is deleted before the next write gets
through, so a stale snapshot cannot outlive an outage.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

import redis

from shared.jobs.status import TERMINAL

log = logging.getLogger(__name__)

EVENTS_PREFIX = "aigc:events:"
CANCEL_CHANNEL = "aigc:cancel"
# What changed where every process caches it: "models" (a new version) or "keys" (a revocation).
CHANGES_CHANNEL = "aigc:changes"
# A snapshot of a job that may still change lives this long at most (seconds).
LIVE_TTL_S = 60
MAX_DIRTY = 100_000

# KEYS[1] the snapshot hash; ARGV: version, JSON, TTL seconds, event channel.
_PUT_IF_NEWER = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('PUBLISH', ARGV[4], ARGV[2])
return 1
"""


class StatusCache:
    """Writes and reads job snapshots; a Redis outage falls back to the database."""

    def __init__(self, url: str, ttl_s: int) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._ttl_s = ttl_s
        self._put = self.redis.register_script(_PUT_IF_NEWER)
        self._dirty: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def key(job_id: str) -> str:
        """Return the Redis key of a job's snapshot."""
        return f"aigc:job:{job_id}"

    def put_many(self, snapshots: Iterable[dict[str, Any]]) -> None:
        """Store snapshots newer than the cached ones and announce each on its job's channel."""
        snapshots = list(snapshots)
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        try:
            pipe = self.redis.pipeline(transaction=False)
            if dirty:
                pipe.delete(*[self.key(i) for i in dirty])
            for snap in snapshots:
                ttl = self._ttl_s if snap["status"] in TERMINAL else min(self._ttl_s, LIVE_TTL_S)
                data = json.dumps(snap, default=str)
                args = [snap["version"], data, ttl, EVENTS_PREFIX + snap["id"]]
                self._put(keys=[self.key(snap["id"])], args=args, client=pipe)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("status cache write failed for %d jobs: %s", len(snapshots), exc)
            self._mark_dirty(dirty | {s["id"] for s in snapshots})

    def _mark_dirty(self, ids: set[str]) -> None:
        with self._lock:
            if len(self._dirty) + len(ids) <= MAX_DIRTY:
                self._dirty |= ids

    def get(self, job_id: str) -> dict[str, Any] | None:
        """Return the cached snapshot, or None when absent or Redis is down."""
        try:
            raw = self.redis.hget(self.key(job_id), "d")
        except redis.RedisError as exc:
            log.warning("status cache read failed for %s: %s", job_id, exc)
            return None
        return json.loads(raw) if raw else None

    def forget(self, ids: Iterable[str]) -> None:
        """Delete jobs' snapshots; if Redis is down, mark them dirty (deleted before next write)."""
        ids = list(ids)
        if not ids:
            return
        try:
            self.redis.delete(*[self.key(i) for i in ids])
        except redis.RedisError as exc:
            log.warning("status cache delete failed for %d jobs: %s", len(ids), exc)
            self._mark_dirty(set(ids))

    def announce_change(self, what: str) -> None:
        """Tell every process that cached ``what`` ("models", "keys") has gone stale."""
        try:
            self.redis.publish(CHANGES_CHANNEL, what)
        except redis.RedisError as exc:
            log.warning("announcement of %s failed: %s", what, exc)  # caches expire on their own

    def announce_cancel(self, ids: Iterable[str]) -> None:
        """Tell workers at once that these jobs (or batches) were asked to stop."""
        try:
            self.redis.publish(CANCEL_CHANNEL, json.dumps(list(ids)))
        except redis.RedisError as exc:
            # Workers also see the flag at their next lease renewal; this only makes them faster.
            log.warning("cancel announcement failed: %s", exc)
