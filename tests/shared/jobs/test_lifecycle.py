"""The job lifecycle under random interleavings, on PostgreSQL and on SQLite.

A hypothesis state machine claims, renews, finishes, fails, cancels, hands back, expires and
rescues a few jobs through the store, with stale attempts (a revived worker) and stale reads (a
slow reconciler) among them. After every step it checks each row against the one before: every
move is in the table, a job ends once and stays so, and its attempts count its claims less the
refunded ones.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, update

from shared.db import utcnow
from shared.errors import InputError, InvalidTransition, JobCanceled, LeaseLost, StoreUnavailable
from shared.jobs import lifecycle
from shared.jobs.lifecycle import MOVES, Event, Expired, Raised
from shared.jobs.status import TERMINAL, JobStatus
from shared.jobs.store import JobStore
from shared.services import Services
from shared.tables import Job

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 2  # low, so that running out of attempts is reached
HAPPENINGS = st.sampled_from(
    [
        Raised(StoreUnavailable("a blip")),  # first, drawn most: a retry leads to more moves
        Raised(InputError("bad input")),
        Raised(RuntimeError("boom")),
        Raised(JobCanceled("canceled")),
        Raised(LeaseLost("lost")),
        Event.TIMED_OUT,
        Event.STOPPED,
        Event.LEASE_LOST,
    ]
)
STALE = st.sampled_from([False, False, True])  # mostly the attempt that holds the job
# Early steps are drawn more often: the moves of a running job first, a submit last.
STEPS = ["claim", "record", "expire", "rescue", "succeed", "hand_back", "renew", "cancel", "submit"]


class Lifecycle(RuleBasedStateMachine):
    """Random moves of a few jobs through one store, checked after every step."""

    store: JobStore

    @initialize()
    def start(self) -> None:
        self.jobs: list[uuid.UUID] = []
        self.last: dict[uuid.UUID, Job] = {}  # each row after the last step
        self.counted: dict[uuid.UUID, int] = {}  # claims, less the refunded attempts
        self.ended: dict[uuid.UUID, tuple[Any, ...]] = {}
        self.claims: list[Job] = []  # every attempt claimed, most of them stale by now
        self.seen: list[Job] = []  # rows of expired leases the reconciler read, maybe stale now
        self.submit()

    def _live(self) -> list[Job]:
        return [row for row in self.last.values() if row.status not in TERMINAL]

    @rule(data=st.data(), move=st.sampled_from(STEPS))
    def step(self, data: st.DataObject, move: str) -> None:
        """Take one step: one rule, so that swarm testing switches no step off for a whole run."""
        getattr(self, move)(data)

    def submit(self, data: st.DataObject | None = None) -> None:
        if len(self._live()) >= 3:
            return
        (job,) = self.store.create([Job(type="test.sleep", params={}, max_attempts=MAX_ATTEMPTS)])
        self.jobs.append(job.id)
        self.last[job.id], self.counted[job.id] = self.store.get(job.id), 0

    def _attempt(self, data: st.DataObject) -> Job | None:
        """Draw the attempt that holds a running job, or (stale) one that no longer does.

        A stale attempt of a job that another claim runs now is drawn first: a revived worker.
        """
        running = {r.id: r.worker_id for r in self._live() if r.status == JobStatus.RUNNING}
        holders = [a for a in self.claims if running.get(a.id) == a.worker_id]
        if not data.draw(STALE):
            return data.draw(st.sampled_from(holders)) if holders else None
        stale = [a for a in self.claims if a not in holders]
        revived = [a for a in stale if a.id in running]
        pool = revived or stale
        return data.draw(st.sampled_from(pool)) if pool else None

    def claim(self, data: st.DataObject) -> None:
        """Claim a live job: a queued one is claimed, a running one is a duplicate message."""
        if not self._live():
            return
        row = self.store.get(data.draw(st.sampled_from(self._live())).id)
        claimed = self.store.claim(
            [row.id],
            f"h:1:{uuid.uuid4().hex[:8]}",
            lease_s=30,
            time_limits={},
            default_limit_s=600,
            running_cap=1,
            solo=row.solo,  # a suspect runs alone: claimed by a solo claim only
        )
        assert bool(claimed) == (row.status == JobStatus.QUEUED and not row.cancel_requested)
        self.claims += claimed
        self.counted[row.id] += len(claimed)

    def _only_by_its_holder(self, attempt: Job, moved: bool) -> None:
        # A stale attempt (its lease taken over, or its job ended) must never move the job.
        before = self.last[attempt.id]
        if moved:
            assert before.status == JobStatus.RUNNING and before.worker_id == attempt.worker_id

    def renew(self, data: st.DataObject) -> None:
        if attempt := self._attempt(data):
            owned = self.store.renew([attempt.worker_id], lease_s=30)
            self._only_by_its_holder(attempt, bool(owned))

    def succeed(self, data: st.DataObject) -> None:
        if attempt := self._attempt(data):
            done = self.store.succeed(attempt.worker_id, attempt.id, {"n": 1}, [], kept=[])
            self._only_by_its_holder(attempt, bool(done))

    def record(self, data: st.DataObject) -> None:
        if attempt := self._attempt(data):
            moved = self.store.record(attempt, data.draw(HAPPENINGS))
            self._only_by_its_holder(attempt, moved is not None)

    def hand_back(self, data: st.DataObject) -> None:
        if attempt := self._attempt(data):
            moved = self.store.hand_back([attempt.id], [attempt.worker_id])
            self._only_by_its_holder(attempt, bool(moved))
            self.counted[attempt.id] -= len(moved)

    def cancel(self, data: st.DataObject) -> None:
        """Cancel a running job, a queued one (less often), or the one that ended last."""
        queued_too = data.draw(STALE)  # a queued job's cancel ends it: keep some running first
        live = [r for r in self._live() if queued_too or r.status == JobStatus.RUNNING]
        pool = live + [self.last[i] for i in self.ended][-1:]
        if not pool:
            return
        before = data.draw(st.sampled_from(pool))
        try:
            after = self.store.request_cancel(before.id)
        except InvalidTransition:
            assert before.status in TERMINAL
            return
        assert after.cancel_requested and before.status not in TERMINAL

    def expire(self, data: st.DataObject) -> None:
        """Let time pass: the leases of the running jobs run out (or their deadlines too)."""
        self._expire(*self.jobs, late=data.draw(st.booleans()))

    def _expire(self, *job_ids: uuid.UUID, late: bool = False) -> None:
        past = utcnow() - timedelta(seconds=1)
        values = {"lease_expires_at": past, **({"deadline_at": past} if late else {})}
        running = Job.id.in_(job_ids), Job.status == JobStatus.RUNNING
        with self.store.sessions() as session:
            session.execute(update(Job).where(*running).values(values))
            session.commit()

    def rescue(self, data: st.DataObject) -> None:
        """Rescue an expired lease as just read, or as an earlier pass read it; or only read."""
        how = data.draw(st.sampled_from(["fresh", "read", "stale"]))
        if how != "stale":  # a reconciler that stalls after its read rescues from it later
            self.seen = [j for j in self.store.expired_leases() if j.id in self.last]
        if how == "read" or not self.seen:
            return
        charged = data.draw(st.booleans())
        rows = self.seen
        seen = data.draw(st.sampled_from(rows))
        moved = self.store.record(seen, Expired(charged=charged))
        if self.last[seen.id].version != seen.version:
            assert moved is None  # the row changed since the reconciler read it
        if moved is not None and moved.status == JobStatus.QUEUED and not charged:
            self.counted[seen.id] -= 1

    @invariant()
    def every_row_keeps_the_rules(self) -> None:
        with self.store.sessions() as session:
            rows = session.scalars(select(Job).where(Job.id.in_(self.jobs))).all()
        for row in rows:
            job_id, before = row.id, self.last[row.id]
            if row.status != before.status:
                assert (before.status, row.status) in MOVES, (before.status, row.status)
            end = (row.status, row.version, row.finished_at, row.attempts)
            if job_id in self.ended:
                assert end == self.ended[job_id], "a job moved after it ended"
            elif row.status in TERMINAL:
                self.ended[job_id] = end
                assert row.finished_at is not None and row.lease_expires_at is None
            if row.status != JobStatus.RUNNING:
                _refuses_running_moves(row)
            assert row.attempts == self.counted[job_id]
            assert 0 <= row.attempts <= MAX_ATTEMPTS
            self.last[job_id] = row

    def teardown(self) -> None:
        """End every job still live, as a client's cancel and the rescue would."""
        for job_id in getattr(self, "jobs", []):
            if self.store.get(job_id).status in TERMINAL:
                continue
            self.store.request_cancel(job_id)
            self._expire(job_id)
            for lost in self.store.expired_leases():
                if lost.id == job_id:
                    self.store.record(lost, Expired(charged=True))
            self.every_row_keeps_the_rules()
            assert self.store.get(job_id).status == JobStatus.CANCELED


def _refuses_running_moves(row: Job) -> None:
    """Check that a job not running is refused every move the table starts from ``running``."""
    entry = {"code": "x", "message": "x"}
    moves = [
        lambda: lifecycle.fail(row, entry),
        lambda: lifecycle.stop(row),
        lambda: lifecycle.retry(row, entry, 0.0),
        lambda: lifecycle.rescue(row, entry, True, utcnow()),
    ]
    for move in moves:
        with pytest.raises(InvalidTransition):
            move()


def test_random_interleavings_keep_the_lifecycle(svc: Services) -> None:
    machine = type("StoreLifecycle", (Lifecycle,), {"store": svc.store})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,  # a database round trip's time varies on a shared machine
            database=None,  # no .hypothesis folder in the work tree
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
