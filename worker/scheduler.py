"""Dynamic batching: one model-owner thread per loaded model batches concurrent requests.

Job threads (Celery's thread pool, or the thread of a chunk message) submit requests and wait on
a future; the owner thread alone touches the model. Interactive requests go ahead of batch rows
in every pass: a bulk batch fills the slots an app's requests leave free.

Text uses continuous batching at the granularity of a chunk of decode steps: each slot carries
its own LSTM state, sampling parameters and random stream, a new request joins at the next chunk
boundary and a finished one leaves, so a long generation never holds back short ones. When
batch rows hold every slot, an interactive request takes one back at the next chunk boundary:
a batch row is parked (its arrays copied out, its slot freed) and resumes later exactly where it
stopped, ahead of the batch rows that never started. Images
are grouped into one forward pass of up to ``max_batch`` images, waiting at most ``max_wait_s``
for company. Each model kind names its scheduler factory in shared.models.kinds; the two below
serve the built-in kinds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.config import Settings
from shared.errors import JobCanceled, RetryableError
from worker import metrics

log = logging.getLogger(__name__)

_STOP = object()
LONE_CHUNK_STEPS = 256
STREAM_CHUNK_STEPS = 64  # a lone streaming request's text arrives at least this often (tokens)
DUTY_WINDOW_S = 60.0  # the duty cycle's window: the rate window of a typical dashboard
IDLE_TICK_S = 1.0  # an idle owner thread wakes this often to let its duty cycle fall


@dataclass
class RequestTiming:
    """Where one request's time went: waiting for a slot, and the passes it was part of."""

    submitted: float = field(default_factory=time.perf_counter)
    admitted: float | None = None
    compute_s: float = 0.0
    passes: int = 0
    rows: int = 0

    def add_pass(self, rows: int, seconds: float) -> None:
        """Count one forward pass this request took part in."""
        self.admitted = self.admitted or time.perf_counter() - seconds
        self.passes += 1
        self.rows += rows
        self.compute_s += seconds

    def summary(self) -> dict[str, float]:
        """Return queue wait, compute time and mean batch size, for the job's result."""
        wait = (self.admitted or self.submitted) - self.submitted
        return {
            "queue_wait_s": round(wait, 6),
            "compute_s": round(self.compute_s, 6),
            "mean_batch": round(self.rows / max(self.passes, 1), 2),
            "passes": self.passes,
        }


@dataclass
class TextRequest:
    """One text generation waiting for, or holding, a slot."""

    ids: list[int]
    max_tokens: int
    temperature: float
    top_k: int | None
    seed: int
    should_stop: Callable[[], bool] = lambda: False
    on_progress: Callable[[int], None] | None = None
    # Called on the owner thread with the tokens so far after each pass: it must not block.
    on_tokens: Callable[[list[int]], None] | None = None
    bulk: bool = False  # a batch item: it yields to interactive requests
    future: Future = field(default_factory=Future)
    timing: RequestTiming = field(default_factory=lambda: RequestTiming())
    # A batch row's decode state while it waits, parked, for a slot back (see TextScheduler).
    parked: dict[str, np.ndarray] | None = None


@dataclass
class ImageRequest:
    """A request for ``n`` images from one seed."""

    n: int
    seed: int
    should_stop: Callable[[], bool] = lambda: False
    bulk: bool = False
    future: Future = field(default_factory=Future)
    timing: RequestTiming = field(default_factory=lambda: RequestTiming())


class Backlog:
    """Requests waiting for a pass: interactive ones first, then batch rows, each in order."""

    def __init__(self) -> None:
        self._interactive: deque[Any] = deque()
        self._bulk: deque[Any] = deque()

    def push(self, request: Any) -> None:
        """Add a request behind the others of its kind."""
        (self._bulk if request.bulk else self._interactive).append(request)

    def push_front(self, request: Any) -> None:
        """Put a parked batch row ahead of the other batch rows: it resumes first."""
        self._bulk.appendleft(request)

    @property
    def interactive(self) -> int:
        """Return how many interactive requests wait."""
        return len(self._interactive)

    def pop(self) -> Any:
        """Take the next request: the oldest interactive one, else the first batch row."""
        return self._interactive.popleft() if self._interactive else self._bulk.popleft()

    def peek(self) -> Any:
        """Return the request ``pop`` would take."""
        return self._interactive[0] if self._interactive else self._bulk[0]

    def __len__(self) -> int:
        return len(self._interactive) + len(self._bulk)

    def __iter__(self) -> Iterator[Any]:
        return iter((*self._interactive, *self._bulk))


class DutyCycle:
    """The share of the last ``window_s`` seconds spent inside forward passes.

    Measured from when the model was loaded, until a whole window has passed: a model that has
    just loaded and run flat out is at 1, not at the share of a window it has been alive. Passes
    never overlap (one owner thread), so only the oldest one kept can straddle the window's
    start, and a running total keeps each update O(1).
    """

    def __init__(self, window_s: float = DUTY_WINDOW_S, now: float | None = None) -> None:
        self.window_s = window_s
        self.born = time.perf_counter() if now is None else now
        self._passes: deque[tuple[float, float]] = deque()
        self._busy = 0.0

    def add(self, started: float, ended: float) -> None:
        """Count one pass, from ``started`` to ``ended`` (perf_counter seconds)."""
        self._passes.append((started, ended))
        self._busy += ended - started

    def share(self, now: float) -> float:
        """Return the busy share of the window ending at ``now``, dropping older passes."""
        since = max(now - self.window_s, self.born)
        while self._passes and self._passes[0][1] <= since:
            started, ended = self._passes.popleft()
            self._busy -= ended - started
        if now <= since:
            return 0.0
        cut = max(since - self._passes[0][0], 0.0) if self._passes else 0.0
        return min(max((self._busy - cut) / (now - since), 0.0), 1.0)


@dataclass
class BatchStats:
    """What the scheduler did: forward passes, rows per pass, time per pass (and as metrics)."""

    kind: str
    model: str = ""  # the loaded version's ref ("small:1"), the duty cycle's label
    calls: int = 0
    parked: int = 0  # batch rows that gave their slot to an interactive request
    rows: list[int] = field(default_factory=list)
    compute_s: float = 0.0
    last_end: float = 0.0  # when the last pass ended (perf_counter)
    duty: DutyCycle = field(default_factory=DutyCycle)

    def record(self, rows: int, started: float, ended: float, oldest: float) -> None:
        """Add one forward pass (bounded history); ``oldest``: when its oldest row arrived.

        Its wait runs from when it could have started (its rows there, the model free) to when
        it did: the price of gathering company for the batch, apart from the model's compute.
        """
        self.calls += 1
        self.compute_s += ended - started
        if len(self.rows) < 100_000:
            self.rows.append(rows)
        metrics.model_pass(
            self.kind, rows, max(started - max(self.last_end, oldest), 0.0), ended - started
        )
        self.last_end = ended
        self.duty.add(started, ended)
        self.refresh(ended)

    def refresh(self, now: float | None = None) -> None:
        """Publish the duty cycle as of ``now`` (also while idle, so that it falls to 0)."""
        if self.model:
            share = self.duty.share(time.perf_counter() if now is None else now)
            metrics.duty_cycle(self.kind, self.model, share)


class _Owner:
    """The thread that owns a model: requests in through a queue, results out through futures.

    Closing it lets every request already submitted finish; a request submitted after that fails
    at once with a retryable error instead of waiting on a thread that is gone.
    """

    def __init__(self, name: str, kind: str, model: str) -> None:
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.stats = BatchStats(kind, model)
        self.closed = False
        self._closing = threading.Lock()  # no request can slip in behind the stop marker
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the owner thread once the requests already submitted are done."""
        with self._closing:
            self.closed = True
            self.inbox.put(_STOP)
        if self.stats.model:
            metrics.duty_cycle(self.stats.kind, self.stats.model, 0.0)  # evicted: idle now

    def _accept(self, request: Any) -> Future:
        with self._closing:
            if self.closed:
                raise RetryableError("the model was unloaded from this worker; the job retries")
            self.inbox.put(request)
        return request.future

    def _take(self, block: bool, timeout: float | None = None) -> Any:
        idle = block and timeout is None
        try:
            # Idle, it wakes each IDLE_TICK_S (None comes back, and the loop waits again).
            return self.inbox.get(block=block, timeout=IDLE_TICK_S if idle else timeout)
        except queue.Empty:
            if idle:
                self.stats.refresh()
            return None

    def _loop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class TextScheduler(_Owner):
    """Continuous batching of text requests over a ``TextGenerator``."""

    def __init__(self, generator: Any, max_batch: int, chunk_steps: int, model: str = "") -> None:
        self.gen = generator
        self.max_batch = max_batch
        self.chunk_steps = chunk_steps
        self.backlog = Backlog()
        self.active: dict[int, TextRequest] = {}
        self.state: Any = None
        super().__init__("aigc-text-scheduler", "text", model)

    def submit(self, request: TextRequest) -> Future:
        """Queue a request; its future yields the generated token ids."""
        if not request.ids or min(request.ids) < 0 or max(request.ids) >= self.gen.vocab_size:
            raise ValueError("prompt token ids out of range")  # a poison request fails alone
        return self._accept(request)

    def _loop(self) -> None:
        stopping = False
        while True:
            stopping = not self._admit() or stopping
            if stopping and not self.active and not self.backlog:
                return
            if not self.active:
                continue
            try:
                self._step()
            except Exception as exc:  # a failed pass fails its rows, never the thread
                log.exception("decode pass failed")
                for req in self.active.values():
                    req.future.set_exception(exc)
                self.active.clear()
                self.state = None

    def _admit(self) -> bool:
        """Move requests from the inbox into free slots; False once asked to stop."""
        going = True
        item = self._take(block=not self.active and not self.backlog and not self.closed)
        while item is not None:
            if item is _STOP:
                going = False
            else:
                self.backlog.push(item)
            item = self._take(block=False)
        self._preempt()
        while self.backlog and len(self.active) < self.max_batch:
            req = self.backlog.pop()
            if req.should_stop():
                req.future.set_exception(JobCanceled("canceled"))
                continue
            self._place(req)
        return going

    def _preempt(self) -> None:
        """Park batch rows until every waiting interactive request has a slot in the next pass."""
        short = self.backlog.interactive - (self.max_batch - len(self.active))
        if short <= 0:
            return
        bulk = [slot for slot, req in self.active.items() if req.bulk]
        # The rows furthest from their end go: one near it would free its slot soon anyway.
        for slot in sorted(bulk, key=self._tokens_left, reverse=True)[:short]:
            req = self.active.pop(slot)
            req.parked = self.gen.park_row(self.state, slot)
            self.backlog.push_front(req)
            self.stats.parked += 1

    def _tokens_left(self, slot: int) -> int:
        return int(self.state.arrays["max_tokens"][slot] - self.state.arrays["n_gen"][slot])

    def _place(self, req: TextRequest) -> None:
        want = min(self.max_batch, len(self.active) + 1 + len(self.backlog))
        if self.state is None or not self.gen.free_slots(self.state):
            self._resize(want)
        slot = self.gen.free_slots(self.state)[0]
        if req.parked is not None:
            self.gen.resume_row(self.state, slot, req.parked)
            req.parked = None
        else:
            self.gen.add_row(
                self.state, slot, req.ids, req.max_tokens, req.temperature, req.top_k, req.seed
            )
        self.active[slot] = req

    def _resize(self, rows: int) -> None:
        """Rebuild the state with room for ``rows`` rows, compacting the live ones."""
        from worker.ml.decode import bucket

        old, live = self.state, sorted(self.active)
        rows = max(bucket(rows), bucket(len(live) + 1))
        if old is None:
            self.state = self.gen.empty_state(rows)
            return
        widths = old.arrays["prompt"].shape[1], old.arrays["out"].shape[1]
        new = self.gen.empty_state(rows, *widths)
        for key, arr in old.arrays.items():
            new.arrays[key][: len(live)] = arr[live]
        new.live[: len(live)] = True
        self.state = new
        self.active = {i: self.active[slot] for i, slot in enumerate(live)}

    def _step(self) -> None:
        steps = self.chunk_steps
        if len(self.active) == 1 and not self.backlog and self.inbox.empty():
            # A lone request runs as a direct call would (the loop exits when it is done), so
            # batching never makes it slower; a newcomer still joins within LONE_CHUNK_STEPS.
            # One that streams its text gets it every STREAM_CHUNK_STEPS all the same.
            (lone,) = self.active.values()
            steps = max(steps, STREAM_CHUNK_STEPS if lone.on_tokens else LONE_CHUNK_STEPS)
        started = time.perf_counter()
        self.state = self.gen.decode_chunk(self.state, steps)
        ended = time.perf_counter()
        seconds = ended - started
        oldest = min(r.timing.submitted for r in self.active.values())
        self.stats.record(len(self.active), started, ended, oldest)
        for req in self.active.values():
            req.timing.add_pass(len(self.active), seconds)
        for slot in self.gen.finished_rows(self.state):
            self.active.pop(slot).future.set_result(self.gen.release_row(self.state, slot))
        for slot, req in list(self.active.items()):
            if req.should_stop():
                self.gen.release_row(self.state, slot)
                self.active.pop(slot).future.set_exception(JobCanceled("canceled"))
            else:
                _report(req, self.gen, self.state, slot)
        # Shrink after a burst, so a lone request does not pay for an empty batch.
        if (
            self.active
            and len(self.active) * 4 <= len(self.state.live)
            and len(self.state.live) > 1
        ):
            self._resize(len(self.active))


def _report(req: TextRequest, gen: Any, state: Any, slot: int) -> None:
    """Hand a live request its progress and, if it streams, its tokens so far."""
    if req.on_progress is not None:
        req.on_progress(int(state.arrays["n_gen"][slot]))
    if req.on_tokens is not None:
        req.on_tokens(gen.row_tokens(state, slot))


class ImageScheduler(_Owner):
    """Groups image requests into forward passes of up to ``max_batch`` images."""

    def __init__(self, generator: Any, max_batch: int, max_wait_s: float, model: str = "") -> None:
        self.generator = generator
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.latent_dim = int(generator.inputs[0].shape[-1])
        self.waiting = Backlog()
        self._stopping = False
        super().__init__("aigc-image-scheduler", "image", model)

    def submit(self, request: ImageRequest) -> Future:
        """Queue a request; its future yields ``n`` uint8 images."""
        return self._accept(request)

    def _loop(self) -> None:
        while True:
            group = self._gather()
            if group is None:
                return
            if not group:
                continue  # every request waiting was canceled
            try:
                self._run(group)
            except Exception as exc:
                log.exception("image pass failed")
                for req in group:
                    if not req.future.done():
                        req.future.set_exception(exc)

    def _gather(self) -> list[ImageRequest] | None:
        """Return the next pass's requests, interactive first; None once closed and done."""
        if not self._fill(block=not self.waiting and not self.closed):
            return None
        deadline = time.monotonic() + self.max_wait_s
        # Only wait when nothing more is queued: requests already waiting join at once.
        while self._images_waiting() < self.max_batch and time.monotonic() < deadline:
            if not self._fill(block=True, timeout=deadline - time.monotonic()):
                break
        group, total = [], 0
        while self.waiting and total + self.waiting.peek().n <= max(self.max_batch, 1):
            req = self.waiting.pop()
            if req.should_stop():
                req.future.set_exception(JobCanceled("canceled"))
                continue
            group.append(req)
            total += req.n
        if not group and self.waiting:
            group.append(self.waiting.pop())  # one request larger than a pass runs alone
        return group

    def _fill(self, block: bool, timeout: float | None = None) -> bool:
        """Move what the inbox holds to ``waiting``; False when nothing waits and it stopped."""
        item = self._take(block=block, timeout=timeout)
        while item is not None:
            if item is _STOP:
                self._stopping = True
            else:
                self.waiting.push(item)
            item = self._take(block=False)
        return bool(self.waiting) or not (self._stopping or self.closed)

    def _images_waiting(self) -> int:
        return sum(r.n for r in self.waiting)

    def _run(self, group: list[ImageRequest]) -> None:
        from worker.ml.decode import bucket

        z = np.concatenate(
            [
                np.random.default_rng(r.seed)
                .standard_normal((r.n, self.latent_dim))
                .astype(np.float32)
                for r in group
            ]
        )
        started = time.perf_counter()
        padded = np.pad(z, ((0, bucket(len(z)) - len(z)), (0, 0)))
        out = np.asarray(self.generator.predict_on_batch(padded), np.float32)[: len(z)]
        ended = time.perf_counter()
        seconds = ended - started
        self.stats.record(len(z), started, ended, min(r.timing.submitted for r in group))
        for req in group:
            req.timing.add_pass(len(z), seconds)
        images = np.clip(np.rint((out + 1.0) * 127.5), 0, 255).astype(np.uint8)
        start = 0
        for req in group:
            req.future.set_result(images[start : start + req.n])
            start += req.n


def text_scheduler(loaded: Any, settings: Settings) -> TextScheduler:
    """Return the scheduler of a loaded text model (the text kind's scheduler factory)."""
    return TextScheduler(
        loaded.generator,
        settings.generate_max_batch,
        settings.decode_chunk_steps,
        loaded.resolved.ref,
    )


def image_scheduler(loaded: Any, settings: Settings) -> ImageScheduler:
    """Return the scheduler of a loaded image model (the image kind's scheduler factory)."""
    return ImageScheduler(
        loaded.model,
        settings.generate_max_batch,
        settings.generate_max_wait_ms / 1000,
        loaded.resolved.ref,
    )
