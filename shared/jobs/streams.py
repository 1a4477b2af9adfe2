"""Text as it is decoded: a Redis stream per job, written off the decode thread, read by SSE.

The model-owner thread only hands the tokens so far of a row to ``TextStreams.offer``: a put on
a bounded queue, dropped when full (the next offer carries all the text so far). One publisher
thread per worker process decodes the new text and appends it with ``XADD`` to the job's
capped, expiring stream, then rings the job's event channel so that the API's streams wake.
Nothing here waits for a reader, and a Redis outage loses no text: a failed append is retried
with the next one, which starts where the last appended one ended.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import redis

from shared.jobs.cache import EVENTS_PREFIX

log = logging.getLogger(__name__)

TEXT_PREFIX = "aigc:text:"
TEXT_TTL_S = 3600  # a stream outlives its job this long: time enough to resume a reader
TEXT_MAXLEN = 4096  # entries kept per job: many more than a job's decode chunks
QUEUE_MAX = 10_000
PUBLISH_MAX = 256  # offers coalesced into one pipeline
# Rung on the job's event channel: "new text", not a status snapshot.
TEXT_NOTICE = json.dumps({"text": True})

Decode = Callable[[list[int]], str]


class TextStreams:
    """Appends jobs' decoded text to their Redis streams, and reads it back."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._queue: queue.Queue[tuple[str, list[int] | None, Decode | None]] = queue.Queue(
            QUEUE_MAX
        )
        self._sent: dict[str, int] = {}  # job -> characters appended (the publisher's own)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def offer(self, job_id: str, tokens: list[int], decode: Decode, *, last: bool = False) -> None:
        """Hand a job's tokens so far to the publisher; never blocks. ``last`` ends its stream."""
        self._start()
        try:
            self._queue.put_nowait((job_id, tokens, decode))
            if last:
                self._queue.put_nowait((job_id, None, None))
        except queue.Full:
            pass  # the next offer carries the text so far; the result carries all of it

    def read(self, job_id: str, after: str) -> list[tuple[str, str]]:
        """Return (entry id, text) of the entries appended after ``after`` ("0": from the start)."""
        got = self.redis.xread({TEXT_PREFIX + job_id: after}, count=TEXT_MAXLEN)
        return [(eid.decode(), f[b"t"].decode()) for _, entries in got for eid, f in entries]

    def length_through(self, job_id: str, entry: str) -> int:
        """Return how many characters the stream holds up to and including ``entry``."""
        if entry == "0":
            return 0
        got = self.redis.xrange(TEXT_PREFIX + job_id, entry, entry)
        return sum(int(f[b"o"]) + len(f[b"t"].decode()) for _, f in got)

    def _start(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._publish_forever, name="aigc-text", daemon=True
                    )
                    self._thread.start()

    def _publish_forever(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < PUBLISH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            latest: dict[str, tuple[list[int], Decode]] = {}
            ended = []
            for job_id, tokens, decode in batch:
                if tokens is None or decode is None:
                    ended.append(job_id)
                else:
                    latest[job_id] = (tokens, decode)
            self._append(latest)
            for job_id in ended:
                self._sent.pop(job_id, None)

    def _append(self, latest: dict[str, tuple[list[int], Decode]]) -> None:
        """Append each job's new text in one pipeline; on failure, the next append resends it."""
        pipe, sent = self.redis.pipeline(transaction=False), {}
        for job_id, (tokens, decode) in latest.items():
            offset = self._sent.get(job_id, 0)
            text = decode(tokens)[offset:]
            if not text:
                continue
            key = TEXT_PREFIX + job_id
            fields: dict[Any, Any] = {"t": text, "o": offset}
            pipe.xadd(key, fields, maxlen=TEXT_MAXLEN, approximate=True)
            pipe.expire(key, TEXT_TTL_S)
            pipe.publish(EVENTS_PREFIX + job_id, TEXT_NOTICE)
            sent[job_id] = offset + len(text)
        if not sent:
            return
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("streamed text of %d jobs not appended: %s", len(sent), exc)
            return
        self._sent.update(sent)
