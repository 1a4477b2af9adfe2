"""Server-sent events: a job's status, progress and text as it is decoded, then its result.

Each stream is a greenlet under gunicorn's gevent workers, waiting on the process's one hub of
job events (a Redis pattern subscription, or one poller of the database), so hundreds of open
streams hold no request thread and no connection each. Every event's id is a cursor, the job
row's version and the last text entry sent (``7.1732-0``): a client that reconnects with
``Last-Event-ID`` gets only what it has not seen. A heartbeat comment goes out on an idle
connection, and a stream ends with the job (its ``result`` event) or after
``AIGC_SSE_MAX_S``, when the client reconnects. Text comes from the worker's Redis stream; on
the embedded defaults (no Redis) the ``result`` event's remainder carries all of it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from flask import Response

from api import deadline
from shared.config import Settings
from shared.errors import InputError
from shared.jobs.events import Hub
from shared.jobs.status import BATCH_TERMINAL, TERMINAL
from shared.jobs.streams import TextStreams

log = logging.getLogger(__name__)

SSE = "text/event-stream"
HEARTBEAT = b": keep-alive\n\n"
BATCH_POLL_S = 1.0  # a batch's counts are one grouped read: once a second is cheap
READ_TIMEOUT_S = 5.0  # one read of the job or its text; past it the stream ends (reconnect)
ALL_TEXT = "all"  # the text part of a cursor once the result's whole text was sent
_CURSOR = re.compile(r"(-1|\d{1,18})\.(0|all|\d{1,20}-\d{1,20})")


@dataclass(frozen=True)
class Events:
    """What a stream sends, as its OpenAPI document says: each event's data, and whether ids."""

    data: dict[str, str]  # event name -> the schema component its JSON data is
    ids: bool


JOB_EVENTS = Events(
    {"status": "JobPublic", "progress": "JobPublic", "text": "TextChunk", "result": "JobPublic"},
    ids=True,
)
BATCH_EVENTS = Events({"counts": "BatchPublic", "result": "BatchPublic"}, ids=False)


@dataclass
class Cursor:
    """Where a client is: the last job version and the last text entry it was sent."""

    version: int = -1
    text: str = "0"

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        """Return the cursor of a ``Last-Event-ID`` header (a fresh one when absent)."""
        if not raw:
            return cls()
        match = _CURSOR.fullmatch(raw.strip())
        if match is None:
            raise InputError("not an event id this stream sent", field="Last-Event-ID")
        return cls(int(match[1]), match[2])

    def __str__(self) -> str:
        return f"{self.version}.{self.text}"


def event(name: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """Return one SSE event (a JSON payload on one ``data`` line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def job_events(
    settings: Settings,
    streams: TextStreams | None,
    hub: Hub,
    job_id: uuid.UUID,
    cursor: Cursor,
    read: Callable[[], dict[str, Any] | None],
) -> Iterator[bytes]:
    """Yield a job's events after ``cursor`` until it ends; heartbeats while nothing happens.

    ``read`` returns the job's snapshot (the view hands it one that holds an admission slot).
    """
    key = str(job_id)
    text = _TextReader(streams, key, cursor)
    ends = time.monotonic() + settings.sse_max_s
    with hub.watch(job_id) as watch:
        job = _read(read)
        status = None
        while job is not None:
            if job["status"] in TERMINAL:
                yield from text.new()
                yield from text.remainder(job)
                cursor.version = job["version"]
                yield event("result", _public(job), str(cursor))
                return
            if job["version"] > cursor.version:
                cursor.version = job["version"]
                name = "status" if job["status"] != status else "progress"
                status = job["status"]
                yield event(name, _public(job), str(cursor))
            yield from text.new()
            if time.monotonic() > ends:
                return
            if not watch.wait(settings.sse_heartbeat_s):
                yield HEARTBEAT
            if watch.snapshot is not None and watch.snapshot["version"] >= job["version"]:
                job, watch.snapshot = watch.snapshot, None
            else:
                job = _read(read)


class _TextReader:
    """Reads a job's streamed text after the cursor and keeps count of what was sent."""

    def __init__(self, streams: TextStreams | None, job_id: str, cursor: Cursor) -> None:
        self.streams, self.job_id, self.cursor = streams, job_id, cursor
        self.sent = 0
        if self.streams is not None and cursor.text not in ("0", ALL_TEXT):
            self.sent = _text(lambda: self.streams.length_through(job_id, cursor.text), 0)

    def new(self) -> Iterator[bytes]:
        """Yield a ``text`` event per entry appended since the last one sent."""
        if self.streams is None or self.cursor.text == ALL_TEXT:
            return
        for entry, chunk in _text(lambda: self.streams.read(self.job_id, self.cursor.text), []):
            self.cursor.text, self.sent = entry, self.sent + len(chunk)
            yield event("text", {"text": chunk}, str(self.cursor))

    def remainder(self, job: dict[str, Any]) -> Iterator[bytes]:
        """Yield the text the result holds beyond what was streamed (all of it without Redis)."""
        full = (job.get("result") or {}).get("text")
        if self.cursor.text == ALL_TEXT or not isinstance(full, str):
            return
        self.cursor.text = ALL_TEXT  # a client that resumes from here has all the text
        if len(full) > self.sent:
            yield event("text", {"text": full[self.sent :]}, str(self.cursor))


def response(events: Iterator[bytes]) -> Response:
    """Return an event-stream response that no proxy buffers or caches."""
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(ending_quietly(events), mimetype=SSE, headers=headers)


def batch_events(read: Callable[[], dict[str, Any]], settings: Settings) -> Iterator[bytes]:
    """Yield a batch's status and counts each time they change, until it ends."""
    last, quiet, ends = None, 0.0, time.monotonic() + settings.sse_max_s
    while time.monotonic() < ends:
        batch = _read(read)
        if batch != last:
            name = "result" if batch["status"] in BATCH_TERMINAL else "counts"
            yield event(name, batch)
            if name == "result":
                return
            last, quiet = batch, 0.0
        elif (quiet := quiet + BATCH_POLL_S) >= settings.sse_heartbeat_s:
            yield HEARTBEAT
            quiet = 0.0
        time.sleep(BATCH_POLL_S)


def ending_quietly(events: Iterator[bytes]) -> Iterator[bytes]:
    """End a stream, rather than break the connection, when a read fails or times out.

    The status line went out with the first event; the client reconnects with its last id.
    """
    try:
        yield from events
    except Exception as exc:
        log.warning("event stream ended early: %s", exc)


def _read(call: Callable[[], Any]) -> Any:
    """Run one read with a deadline: a silent database or Redis ends the stream, never hangs it."""
    return deadline.bounded(call, READ_TIMEOUT_S)


def _text(call: Callable[[], Any], empty: Any) -> Any:
    """Read streamed text; on a Redis error, ``empty``: the result carries all the text."""
    try:
        return _read(call)
    except redis.RedisError as exc:
        log.warning("streamed text unreadable: %s", exc)
        return empty


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k != "version"}
