"""Admission: an API process takes on no more database work at once than its pool can serve.

Under gevent one process accepts a thousand open requests (long polls and event streams are
greenlets), but its pool holds ``api_db_connections`` connections (plus one for its own
background reads). Each request that uses the database holds one of as many slots, from
before its first query (the key check) to its end; one that finds no slot free within
``api_admit_wait_s`` is answered 503 with ``Retry-After`` before it has done anything. So an
admitted request never waits for a connection, and the pool never times out under load.

Waits hold no slot: a long poll gives its slot back while it waits and takes one again for its
last read, and an event stream takes one for each read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from flask import Flask, current_app, g, request

from shared.config import Settings
from shared.errors import Busy

T = TypeVar("T")
EXTENSION = "aigc.admission"
# Connections a process keeps beyond its slots: the polling event hub's reads (no Redis).
BACKGROUND_CONNECTIONS = 1
# Routes that never touch the database (health, metrics, the document, the console's files).
UNGATED_ENDPOINTS = frozenset({"health.healthz", "metrics.metrics", "openapi.openapi_json"})
UNGATED_BLUEPRINTS = frozenset({"console"})


class Gate:
    """A counting semaphore of database slots, with a bounded wait for one."""

    def __init__(self, slots: int, wait_s: float) -> None:
        # Under gunicorn's gevent workers threading is patched: waiters are greenlets.
        self._slots = threading.BoundedSemaphore(slots)
        self.wait_s = wait_s

    def enter(self) -> None:
        """Take a slot, or raise Busy once none has come free within ``wait_s``."""
        if not self._slots.acquire(timeout=self.wait_s):
            raise Busy(
                "the API is at its capacity for database work; try again",
                wait_s=round(self.wait_s, 3),
            )

    def leave(self) -> None:
        """Give a slot back."""
        self._slots.release()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for one piece of work."""
        self.enter()
        try:
            yield
        finally:
            self.leave()


def pool_size(settings: Settings) -> int:
    """Return how many connections an API process's pool holds: its slots and the background's."""
    return settings.api_db_connections + BACKGROUND_CONNECTIONS


def gate() -> Gate:
    """Return the current app's gate."""
    return current_app.extensions[EXTENSION]


def gated(read: Callable[[], T]) -> Callable[[], T]:
    """Return ``read`` made to hold one of the app's slots while it runs (reads after a wait)."""
    held = gate()  # taken now: a stream's reads run after its request context is gone

    def run() -> T:
        with held.slot():
            return read()

    return run


def step_out() -> None:
    """Give the current request's slot back early: it is about to wait on something else."""
    if g.pop("admitted", False):
        gate().leave()


def _admit() -> None:
    if request.endpoint in UNGATED_ENDPOINTS or request.blueprint in UNGATED_BLUEPRINTS:
        return
    gate().enter()
    g.admitted = True


def _release(_: BaseException | None) -> None:
    step_out()


def init_app(app: Flask, settings: Settings) -> None:
    """Admit requests through the gate; register before any other hook that reads the database."""
    app.extensions[EXTENSION] = Gate(settings.api_db_connections, settings.api_admit_wait_s)
    app.before_request(_admit)
    app.teardown_request(_release)
