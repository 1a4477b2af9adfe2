"""The worker's watch over the jobs it runs: leases, deadlines, cancel flags, lane watermarks.

One keeper thread per worker process (dramatiq keeps a deadline per worker thread in the same
way). Every ``heartbeat_s`` it renews the leases of all running jobs in one UPDATE, which never
renews a job past its deadline. Every tick it ends jobs that ran past their deadline, whether or
not their thread is still busy, and without Redis it reads the jobs' cancel flags. With Redis a
listener hears cancels at once. A job thread still busy long after its job timed out is stuck:
the thread pool cannot kill it, so once too many are stuck the worker exits when its healthy jobs
are done, and its supervisor starts a fresh one. Told to stop (SIGTERM), it lets its jobs run for
most of the stop grace, then hands back those still running, uncounted, before SIGKILL comes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import select

from shared.config import Settings
from shared.delivery import lanes
from shared.jobs.cache import CANCEL_CHANNEL
from shared.jobs.events import listen_forever
from shared.jobs.lifecycle import Event
from shared.jobs.store import JobStore
from shared.observe.logs import job_fields
from shared.tables import Job
from worker import metrics
from worker.context import JobContext
from worker.outcomes import Outcome

log = logging.getLogger(__name__)

EXIT_STUCK = 3  # exit status of a worker that restarts itself to free stuck job threads
# Of the stop grace, the part running jobs get to finish; the rest lets the handed-back jobs'
# threads wind down and Celery's warm shutdown end before the supervisor's SIGKILL (an idle
# thread-pool worker took 2.4 s to exit after SIGTERM on a busy 2-core machine).
HAND_BACK_AT = 2 / 3
IDLE_CHECK_S = 0.1  # how often a stopping worker looks whether its jobs are done


class LeaseKeeper:
    """Renews leases, enforces deadlines and applies cancels for one worker process."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._contexts: dict[uuid.UUID, JobContext] = {}
        self._consumed: dict[str, datetime] = {}
        self._ended: dict[uuid.UUID, float] = {}  # ended by the keeper (when), thread busy
        self._stuck: set[uuid.UUID] = set()
        self._held: set[uuid.UUID] = set()  # queued jobs whose messages wait here, at the gate
        self._lock = threading.Lock()
        self.stopping = threading.Event()  # set on SIGTERM: claim nothing more
        self._thread: threading.Thread | None = None
        # What to do once ``stuck_limit`` threads are stuck: set by a thread-pool worker (a
        # prefork child that hangs is killed by Celery's hard time limit instead).
        self.stuck_limit = 1
        self.on_stuck: Callable[[], None] | None = None

    # -- what the runner calls ---------------------------------------------------------------
    def track(self, contexts: Iterable[JobContext], *, in_order: bool = True) -> None:
        """Start watching newly claimed jobs (``in_order``: read from their lane's main queue)."""
        with self._lock:
            for ctx in contexts:
                self._contexts[ctx.job_id] = ctx
                if in_order:
                    self._note_consumed(ctx.job)
            self._start_thread()

    def _start_thread(self) -> None:
        # Under self._lock.
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aigc-keeper", daemon=True)
            self._thread.start()

    @contextmanager
    def holding(self, job_ids: Iterable[uuid.UUID]) -> Iterator[None]:
        """Mark queued jobs' messages held here while the block runs (renewed every heartbeat)."""
        ids = set(job_ids)
        with self._lock:
            self._held |= ids
            self._start_thread()
        self._guarded(self._renew_holds)  # now: the message may have waited long already
        try:
            yield
        finally:
            with self._lock:
                self._held -= ids

    def untrack(self, contexts: Iterable[JobContext]) -> None:
        """Stop watching jobs whose thread has finished with them."""
        with self._lock:
            for ctx in contexts:
                self._contexts.pop(ctx.job_id, None)
                self._ended.pop(ctx.job_id, None)
                self._stuck.discard(ctx.job_id)

    def cancel(self, ids: Iterable[str]) -> None:
        """Stop the jobs named, or every job of the batches named."""
        wanted = set(ids)
        with self._lock:
            contexts = list(self._contexts.values())
        for ctx in contexts:
            if str(ctx.job_id) in wanted or str(ctx.job.batch_id) in wanted:
                ctx.request_stop()

    def running(self) -> list[JobContext]:
        """Return the contexts of the jobs this process is running."""
        with self._lock:
            return list(self._contexts.values())

    def _note_consumed(self, job: Job) -> None:
        lane = lanes.lane_of(job)
        at = job.published_at
        if at is not None and (lane not in self._consumed or self._consumed[lane] < at):
            self._consumed[lane] = at

    # -- the keeper thread -------------------------------------------------------------------
    def _run(self) -> None:
        tick = min(self._settings.cancel_poll_s, self._settings.heartbeat_s)
        next_renew = time.monotonic() + self._settings.heartbeat_s
        while True:
            time.sleep(tick)
            self._guarded(self._enforce_deadlines)
            if self._store.cache is None:
                self._guarded(self._read_cancel_flags)
            if time.monotonic() >= next_renew:
                next_renew = time.monotonic() + self._settings.heartbeat_s
                self._guarded(self._renew)
                self._guarded(self._renew_holds)
                self._guarded(self._flush_lanes)

    @staticmethod
    def _guarded(step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # a database blip must not stop the keeper; leases have slack
            log.warning("lease keeper: %s failed: %s", step.__name__, exc)

    def _renew(self) -> None:
        contexts = self.running()
        tokens = sorted({c.token for c in contexts if not c.finished})
        if not tokens:
            return
        try:
            owned = self._store.renew(tokens, self._settings.lease_s)
        except Exception:
            metrics.LEASE_FAILURES.inc()
            raise  # logged by _guarded; the next renewal tries again
        for ctx in contexts:
            ctx.observe_lease(owned)

    def _renew_holds(self) -> None:
        with self._lock:
            held = list(self._held)
        self._store.hold(held, self._settings.lease_s)

    def hand_back(self) -> None:
        """Give back every job still running here: requeued, its attempt not counted."""
        contexts = [c for c in self.running() if not c.finished]
        tokens = sorted({c.token for c in contexts})
        back = set(self._store.hand_back([c.job_id for c in contexts], tokens))
        for ctx in contexts:
            if ctx.job_id in back:
                ctx.mark_lease_lost()  # its thread stops at its next check; its result is dropped
        if contexts:
            log.warning("stopping: handed back %d of %d unfinished jobs", len(back), len(contexts))

    def _read_cancel_flags(self) -> None:
        ids = [c.job_id for c in self.running() if not c.finished]
        if not ids:
            return
        with self._store.sessions() as session:
            flagged = session.scalars(
                select(Job.id).where(Job.id.in_(ids), Job.cancel_requested.is_(True))
            )
            self.cancel(str(i) for i in flagged)

    def _flush_lanes(self) -> None:
        with self._lock:
            consumed, self._consumed = self._consumed, {}
        if consumed:
            try:
                lanes.advance(self._store.sessions, consumed)
            except Exception:
                with self._lock:  # keep them for the next renewal
                    for lane, at in consumed.items():
                        self._consumed[lane] = max(at, self._consumed.get(lane, at))
                raise

    def _enforce_deadlines(self) -> None:
        now, grace = time.monotonic(), self._settings.stuck_grace_s
        for ctx in self.running():
            if ctx.finished:
                continue
            ended = self._ended.get(ctx.job_id)
            if ended is not None:
                if now >= ended + grace:
                    self._note_stuck(ctx)
            elif now >= ctx.deadline:
                self._end(ctx, now, self._time_out)
            elif ctx.stop_requested_at is not None and now >= ctx.stop_requested_at + grace:
                self._end(ctx, now, self._cancel_ignored)

    def _end(self, ctx: JobContext, now: float, how: Callable[[JobContext], None]) -> None:
        # A job ends here even if its thread does not stop: its late result is discarded.
        self._ended[ctx.job_id] = now
        with job_fields(ctx.job):
            how(ctx)

    def _time_out(self, ctx: JobContext) -> None:
        ctx.mark_timed_out()
        log.warning("job %s ran past its time limit; ending it", ctx.job_id)
        if self._store.record(ctx.job, Event.TIMED_OUT) is not None:
            metrics.attempt_ended(ctx, Outcome.TIMED_OUT)

    def _cancel_ignored(self, ctx: JobContext) -> None:
        log.warning("job %s did not stop when canceled; ending it", ctx.job_id)
        if self._store.record(ctx.job, Event.STOPPED) is not None:
            metrics.attempt_ended(ctx, Outcome.CANCELED)

    def _note_stuck(self, ctx: JobContext) -> None:
        with self._lock:
            if ctx.job_id in self._stuck:
                return
            self._stuck.add(ctx.job_id)
            stuck = len(self._stuck)
        log.error("job %s: its thread is stuck past its deadline (%d stuck)", ctx.job_id, stuck)
        if self.on_stuck is not None and stuck >= self.stuck_limit:
            threading.Thread(target=self.on_stuck, name="aigc-stuck-exit", daemon=True).start()
            self.on_stuck = None

    def healthy_running(self) -> int:
        """Return how many jobs this process runs whose threads are not stuck."""
        with self._lock:
            return len([i for i in self._contexts if i not in self._stuck])


def restart_when_idle(keeper: LeaseKeeper) -> None:
    """Stop taking jobs, let the healthy ones finish, then exit for a fresh worker.

    SIGTERM starts Celery's warm shutdown (no new messages; running jobs finish), which would
    wait for the stuck threads for ever, so the process exits by itself once only they are left.
    """
    log.error("too many stuck job threads; restarting this worker once its other jobs finish")
    os.kill(os.getpid(), signal.SIGTERM)
    while keeper.healthy_running():
        time.sleep(0.5)
    logging.shutdown()
    os._exit(EXIT_STUCK)


def hand_back_before_kill(keeper: LeaseKeeper, grace_s: float) -> None:
    """Let the running jobs finish for most of the stop grace, then hand back those left."""
    deadline = time.monotonic() + grace_s * HAND_BACK_AT
    while keeper.healthy_running() and time.monotonic() < deadline:
        time.sleep(IDLE_CHECK_S)
    keeper._guarded(keeper.hand_back)  # if the store is away, the reconciler rescues them


def stop_gracefully(grace_s: float) -> None:
    """Claim nothing more, and hand back at the grace what still runs (on SIGTERM).

    Celery's warm shutdown already stops taking messages and waits for the running jobs; a
    redeploy then costs no attempt and marks no job a suspect. A process without a keeper (a
    prefork parent) runs no jobs itself.
    """
    keeper = _keeper
    if keeper is None or keeper.stopping.is_set():
        return
    keeper.stopping.set()
    threading.Thread(
        target=hand_back_before_kill, args=(keeper, grace_s), name="aigc-hand-back", daemon=True
    ).start()


_keeper: LeaseKeeper | None = None
_keeper_lock = threading.Lock()


def keeper_of_process(
    store: JobStore | None = None, settings: Settings | None = None
) -> LeaseKeeper:
    """Return this process's keeper, created (with its cancel listener) on first use."""
    global _keeper
    with _keeper_lock:
        if _keeper is None:
            if store is None or settings is None:
                raise RuntimeError("the lease keeper has not been started")
            _keeper = LeaseKeeper(store, settings)
            if settings.redis_url:  # hear cancels at once, not at the next renewal
                threading.Thread(
                    target=listen_forever,
                    args=(settings.redis_url, CANCEL_CHANNEL),
                    kwargs={"on_message": lambda _, data: _keeper.cancel(json.loads(data))},
                    name="aigc-cancel",
                    daemon=True,
                ).start()
        return _keeper
