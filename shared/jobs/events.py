"""Waiting for jobs to change without holding a thread or a connection per waiter.

An API process has one hub. With Redis it is one pattern subscription to every job's event
channel, fanned out to local waiters; without Redis it is one thread that reads the versions of
all watched jobs in one query. Under gevent both are greenlets, so a waiter costs a greenlet and
an event, and hundreds of long polls (and, later, streams) hold no request thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import redis

from shared.config import Settings
from shared.jobs.cache import EVENTS_PREFIX
from shared.jobs.reads import JobReads
from shared.jobs.status import TERMINAL

log = logging.getLogger(__name__)

# Waiters re-read the job this often even without an event, in case one was missed (seconds).
REREAD_S = 5.0
POLL_S = 0.2  # how often the database is read for changes, without Redis
RECONNECT_MAX_S = 5.0


class Watch:
    """One waiter's doorbell: rung with the job's newest snapshot when one is seen."""

    def __init__(self) -> None:
        self._rung = threading.Event()
        self.snapshot: dict[str, Any] | None = None

    def ring(self, snapshot: dict[str, Any] | None = None) -> None:
        """Wake the waiter, with the snapshot that woke it if there is one."""
        if snapshot is not None:
            self.snapshot = snapshot
        self._rung.set()

    def wait(self, timeout_s: float) -> bool:
        """Return True when rung within ``timeout_s``, and re-arm."""
        rung = self._rung.wait(timeout_s)
        self._rung.clear()
        return rung


class Hub(Protocol):
    """Fans job changes out to the waiters of one process."""

    def watch(self, job_id: uuid.UUID) -> Any:
        """Return a context manager yielding a Watch on one job."""


class _Watchers:
    """The waiters of one process, by job id."""

    def __init__(self) -> None:
        self._by_job: dict[str, set[Watch]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def watch(self, job_id: uuid.UUID) -> Iterator[Watch]:
        key, watch = str(job_id), Watch()
        with self._lock:
            self._by_job.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                waiters = self._by_job.get(key, set())
                waiters.discard(watch)
                if not waiters:
                    self._by_job.pop(key, None)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._by_job)

    def ring(self, job_id: str, snapshot: dict[str, Any] | None = None) -> None:
        with self._lock:
            waiters = list(self._by_job.get(job_id, ()))
        for watch in waiters:
            watch.ring(snapshot)

    def ring_all(self) -> None:
        for job_id in self.ids():
            self.ring(job_id)


class RedisHub(_Watchers):
    """One ``PSUBSCRIBE`` per process; events of jobs nobody here waits for are dropped."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def watch(self, job_id: uuid.UUID) -> Any:
        """Return a context manager yielding a Watch on one job (starts the listener once)."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="aigc-events", daemon=True
                )
                self._thread.start()
        return super().watch(job_id)

    def _listen(self) -> None:
        listen_forever(
            self._url,
            EVENTS_PREFIX + "*",
            lambda channel, data: self.ring(channel.removeprefix(EVENTS_PREFIX), _snapshot(data)),
            on_gap=self.ring_all,  # events may have been missed: every waiter re-reads its job
            pattern=True,
        )


def _snapshot(data: bytes) -> dict[str, Any] | None:
    """Return the job snapshot an event carries, or None for a notice of new streamed text."""
    event = json.loads(data)
    return event if "status" in event else None


class PollingHub(_Watchers):
    """Without Redis: one thread reads the versions of every watched job, in one query."""

    def __init__(
        self, read_versions: Callable[[list[str]], dict[str, int]], interval_s: float
    ) -> None:
        super().__init__()
        self._read_versions = read_versions
        self._interval_s = interval_s
        self._seen: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def watch(self, job_id: uuid.UUID) -> Any:
        """Return a context manager yielding a Watch on one job (starts the poller once)."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._poll, name="aigc-events", daemon=True)
                self._thread.start()
        return super().watch(job_id)

    def _poll(self) -> None:
        while True:
            time.sleep(self._interval_s)
            ids = self.ids()
            if not ids:
                self._seen.clear()
                continue
            try:
                versions = self._read_versions(ids)
            except Exception as exc:  # the database is down: waiters time out or re-read later
                log.warning("job events: cannot read versions: %s", exc)
                continue
            for job_id, version in versions.items():
                if self._seen.get(job_id) != version:  # first sight too: the waiter re-reads
                    self.ring(job_id)
            self._seen = versions


def listen_forever(
    url: str,
    channel: str,
    on_message: Callable[[str, bytes], None],
    *,
    on_gap: Callable[[], None] = lambda: None,
    pattern: bool = False,
) -> None:
    """Hand every message of a Redis channel (or pattern) on; reconnect for ever, with backoff.

    ``on_gap`` runs after each disconnect: messages sent meanwhile are lost to this listener.
    """
    backoff = 0.1
    while True:
        connected = time.monotonic()
        try:
            _listen_once(url, channel, on_message, pattern)
        except redis.RedisError as exc:
            log.warning("listening to %s: %s; reconnecting in %.1fs", channel, exc, backoff)
        on_gap()
        backoff = 0.1 if time.monotonic() - connected > RECONNECT_MAX_S else backoff
        time.sleep(backoff)
        backoff = min(backoff * 2, RECONNECT_MAX_S)


def _listen_once(
    url: str, channel: str, on_message: Callable[[str, bytes], None], pattern: bool
) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=10)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        (pubsub.psubscribe if pattern else pubsub.subscribe)(channel)
        for message in pubsub.listen():
            on_message(message["channel"].decode(), message["data"])
    finally:
        pubsub.close()
        client.close()


def wait_for_end(
    hub: Hub, job_id: uuid.UUID, wait_s: float, read: Callable[[], dict[str, Any] | None]
) -> dict[str, Any] | None:
    """Return ``read()`` once the job is terminal, or when ``wait_s`` has passed (a long poll)."""
    deadline = time.monotonic() + wait_s
    with hub.watch(job_id) as watch:
        job = read()  # after the watch exists, so no change can slip between read and wait
        while job is not None and job["status"] not in TERMINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if watch.wait(min(left, REREAD_S)) and watch.snapshot is not None:
                job, watch.snapshot = watch.snapshot, None
            else:
                job = read()
        return job


def make_hub(settings: Settings, reads: JobReads) -> Hub:
    """Return the hub a process's waiters share: Redis events, or polling the database."""
    if settings.redis_url:
        return RedisHub(settings.redis_url)
    return PollingHub(reads.versions, POLL_S)
