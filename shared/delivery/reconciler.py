"""The reconciler: rescues jobs whose worker died, and publishes every job that is due.

A queued job is due to publish when it has no message in the broker (``published_at`` is NULL:
a failed publish, a rescue, or a retry whose backoff has passed) or when its message was lost:
published more than ``republish_after_s`` ago, and either its lane has since delivered a job
published after it, or the lane has been empty for ``TAKE_GRACE_S`` while the job waited. A busy
lane therefore never hides a lost message, and a message merely waiting its turn is never
duplicated. Nor is one a worker holds while its job waits for a place at the worker's gate.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter

from shared.config import Settings
from shared.data import retention
from shared.data.artifacts import ArtifactStore
from shared.delivery import lanes, pacer, webhooks
from shared.delivery.publish import Publisher
from shared.jobs.lifecycle import Expired
from shared.jobs.reads import cutoff
from shared.jobs.status import JobStatus
from shared.jobs.store import JobStore
from shared.tables import Job

log = logging.getLogger(__name__)

RESCUED = Counter(
    "aigc_jobs_rescued_total",
    "Jobs whose lease expired (their worker died or was cut off), by what the rescue did: "
    "requeued, failed (out of attempts) or canceled.",
    ["outcome"],
)
# A worker takes a message off its lane a moment before its claim marks the job running: a job
# seen queued in an empty lane may be in that gap. It counts as lost only if it is still queued,
# the lane still empty, this long after it was first seen so (suspects are watched from this
# long before the republish delay, so the delay is not lengthened).
TAKE_GRACE_S = 2.0


@dataclass
class ReconcileReport:
    """What one pass of the reconciler did."""

    published: int = 0
    republished: int = 0
    requeued: int = 0
    failed: int = 0
    canceled: int = 0


def process_of(token: str) -> str:
    """Return the part of a claim token that names its worker process (``host:pid:``)."""
    host, pid, _ = token.rsplit(":", 2)
    return f"{host}:{pid}:"


def reconcile_once(store: JobStore, publisher: Publisher, settings: Settings) -> ReconcileReport:
    """Run one pass: rescue expired leases, publish due jobs, re-publish lost messages."""
    report = ReconcileReport(canceled=store.cancel_stranded())
    _rescue(store, report)
    report.published = publish_due(store, publisher) + pacer.top_up(
        store.sessions, publisher, settings
    )
    report.republished = _republish_lost(store, publisher, settings.republish_after_s)
    if report != ReconcileReport():
        log.info("reconciled: %s", report)
    return report


def _rescue(store: JobStore, report: ReconcileReport) -> None:
    expired = store.expired_leases()
    if not expired:
        return
    running = store.running_per_process({process_of(j.worker_id or "::") for j in expired})
    for job in expired:
        # Alone in its process, the job may have killed it: the attempt counts.
        charged = job.solo or running[process_of(job.worker_id or "::")] <= 1
        moved = store.record(job, Expired(charged=charged))
        if moved is None:
            continue  # it changed meanwhile (a cancel, a late finish): next pass sees it anew
        if moved.status == JobStatus.QUEUED:
            report.requeued += 1
            RESCUED.labels("requeued").inc()
        elif moved.status == JobStatus.FAILED:
            report.failed += 1
            RESCUED.labels("failed").inc()
        else:
            report.canceled += 1
            RESCUED.labels("canceled").inc()


def publish_due(store: JobStore, publisher: Publisher) -> int:
    """Publish queued jobs that have no message in the broker and whose time has come."""
    return _publish(publisher, store.due_unpublished())


class _Suspects:
    """Queued jobs seen in an empty lane, each with when it was first seen so (monotonic)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the beat task may run passes on several pool threads
        self._since: dict[uuid.UUID, float] = {}

    def long_enough(self, seen: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Forget jobs not seen this time; return those seen for at least ``TAKE_GRACE_S``."""
        now = time.monotonic()
        with self._lock:
            self._since = {i: self._since.get(i, now) for i in seen}
            return {i for i, at in self._since.items() if now - at >= TAKE_GRACE_S}


_SUSPECTS = _Suspects()


def _republish_lost(store: JobStore, publisher: Publisher, republish_after_s: float) -> int:
    margin = timedelta(seconds=lanes.REORDER_S)
    marks = {lane: at - margin for lane, at in lanes.watermarks(store.sessions).items()}
    due = cutoff(republish_after_s)
    depth: dict[str, int | None] = {}
    lost, idle = [], []
    for job in store.published_before(cutoff(max(republish_after_s - TAKE_GRACE_S, 0.0))):
        lane = lanes.lane_of(job)
        if lane in marks and job.published_at < marks[lane]:
            if job.published_at < due:
                lost.append(job)  # a later message of its lane was delivered: this never will
            continue
        if lane not in depth:
            depth[lane] = _depth(publisher, lane)
        if depth[lane] == 0:
            idle.append(job)  # nothing left in the lane (or its redo queue) to deliver it
    watched = _SUSPECTS.long_enough([j.id for j in idle])
    lost += [j for j in idle if j.id in watched and j.published_at < due]
    return _publish(publisher, lost)


def _depth(publisher: Publisher, lane: str) -> int | None:
    counts = [publisher.queue_depth(q) for q in (lane, lanes.redo(lane))]
    return None if None in counts else sum(counts)  # type: ignore[arg-type]


def _publish(publisher: Publisher, jobs: Sequence[Job]) -> int:
    # These jobs waited their turn once already: they go to the redo queue, read first.
    return publisher.publish(jobs, stamped=False, redo=True) if jobs else 0


def run_forever(
    store: JobStore,
    publisher: Publisher,
    artifacts: ArtifactStore,
    settings: Settings,
    stop: threading.Event,
) -> None:
    """Reconcile every ``reconcile_interval_s`` seconds until ``stop`` is set, logging errors.

    Every ``retention_sweep_s`` a pass also sweeps what retention expires (a bounded amount:
    the next sweep goes on where this one stopped). Webhooks go out from a thread of their own.
    """
    next_sweep = time.monotonic()
    webhooks.run_dispatcher(store.sessions, settings, stop)
    while not stop.is_set():
        try:
            reconcile_once(store, publisher, settings)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + settings.retention_sweep_s
                swept = retention.sweep(store, artifacts, settings)
                if swept != retention.SweepReport():
                    log.info("retention: %s", swept)
        except Exception:
            log.exception("reconcile pass failed; will try again")
        stop.wait(settings.reconcile_interval_s)
