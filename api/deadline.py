"""Every request ends by a deadline: a silent database or broker gets the client a 503, not a hang.

The API serves under gunicorn's gevent workers, where a ``gevent.Timeout`` interrupts a request
wherever it waits, a database socket included; SQLAlchemy then drops that connection rather than
reuse it. Waits (long polls) and uploads extend their own deadline. Elsewhere (the Flask test
client) there is no event loop to interrupt a wait, and deadlines are not enforced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import gevent
from flask import request
from gevent import monkey

from shared.errors import StoreUnavailable

log = logging.getLogger(__name__)

ENVIRON_KEY = "aigc.deadline"
RETRY_AFTER_S = 5
# How long an interrupted write may take to learn whether its commit landed.
RECHECK_S = 2.0

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def green() -> bool:
    """Return whether this process runs under gevent (its sockets are cooperative)."""
    return monkey.is_module_patched("socket")


class Deadlines:
    """WSGI middleware: a request still running after its deadline is answered with a 503."""

    def __init__(self, app: WsgiApp, default_s: float) -> None:
        self.app = app
        self.default_s = default_s

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not green():
            return self.app(environ, start_response)
        environ[ENVIRON_KEY] = gevent.Timeout.start_new(self.default_s)
        try:
            # A streamed body is produced after this returns, outside the deadline.
            return self.app(environ, start_response)
        except gevent.Timeout as fired:
            if fired is not environ[ENVIRON_KEY]:
                raise
            return _unavailable(start_response)
        finally:
            environ[ENVIRON_KEY].close()


def extend(seconds: float) -> None:
    """Give the current request ``seconds`` from now before its deadline."""
    timeout = request.environ.get(ENVIRON_KEY)
    if timeout is not None:
        timeout.close()  # a gevent timer's length is fixed: start a new one in its place
        request.environ[ENVIRON_KEY] = gevent.Timeout.start_new(seconds)


def lift() -> None:
    """End the current request's deadline: what is left of it is bounded by its own timeouts."""
    timeout = request.environ.get(ENVIRON_KEY)
    if timeout is not None:
        timeout.close()


@contextmanager
def committing(committed: Callable[[], bool], *, write_s: float | None = None) -> Iterator[None]:
    """Run a submit's write, whose commit is never answered with an error.

    The write still has a deadline (``write_s`` from now, when given), since a frozen database
    must not hold the request. Once the write returns, the request has no deadline left: the
    publish after it is bounded by its own timeouts and is the reconciler's to retry. If the
    deadline or a lost connection interrupts the write, the commit may have landed anyway:
    ``committed()`` (bounded by ``RECHECK_S``) tells, and a landed one goes on to its answer.
    """
    if write_s is not None:
        extend(write_s)
    try:
        yield
    except (gevent.Timeout, StoreUnavailable) as exc:
        if isinstance(exc, gevent.Timeout) and exc is not request.environ.get(ENVIRON_KEY):
            raise  # another wait's own timeout
        lift()
        if not _landed(committed):
            raise
        log.warning("a submit's write was interrupted (%r) after its commit landed", exc)
    else:
        lift()


def write_guard(
    committed: Callable[[], bool], *, write_s: float | None = None
) -> Callable[[], AbstractContextManager[None]]:
    """Return a submit's ``guard``: its write runs under ``committing``."""
    return lambda: committing(committed, write_s=write_s)


def _landed(committed: Callable[[], bool]) -> bool:
    try:
        return bool(bounded(committed, RECHECK_S))
    except Exception as exc:
        log.warning("could not tell whether an interrupted write landed: %s", exc)
        return False


def bounded(call: Callable[[], Any], seconds: float) -> Any:
    """Return ``call()``, or raise TimeoutError if it has not returned within ``seconds``."""
    if not green():
        return call()
    timeout = gevent.Timeout(seconds)
    timeout.start()
    try:
        return call()
    except gevent.Timeout as fired:
        if fired is not timeout:
            raise  # the request's own deadline
        raise TimeoutError(f"no answer within {seconds}s") from None
    finally:
        timeout.close()


def _unavailable(start_response: Callable[..., Any]) -> list[bytes]:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "a dependency did not answer in time; try again",
            "code": "deadline_exceeded",
        }
    ).encode()
    start_response(
        "503 Service Unavailable",
        [
            ("Content-Type", "application/problem+json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(RETRY_AFTER_S)),
        ],
    )
    return [body]
