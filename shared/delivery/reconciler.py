"""The reconciler: re-publishes lost messages and rescues jobs whose worker died."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from shared.delivery.publish import Publisher
from shared.jobs import jobtypes
from shared.jobs.store import JobStatus, JobStore

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What one pass of the reconciler did."""

    republished: int = 0
    requeued: int = 0
    failed: int = 0
    canceled: int = 0


def reconcile_once(
    store: JobStore, publisher: Publisher, republish_after_s: float
) -> ReconcileReport:
    """Run one pass: rescue expired leases, then re-publish jobs queued for too long."""
    report = ReconcileReport()
    requeued = []
    for job in store.expired_leases():
        moved = store.rescue(job)
        if moved is None:
            continue
        if moved.status == JobStatus.QUEUED:
            report.requeued += 1
            requeued.append(moved)
        elif moved.status == JobStatus.FAILED:
            report.failed += 1
        else:
            report.canceled += 1
    publisher.publish(requeued)
    report.republished = _republish_stale(store, publisher, republish_after_s)
    if report != ReconcileReport():
        log.info("reconciled: %s", report)
    return report


def _republish_stale(store: JobStore, publisher: Publisher, older_than_s: float) -> int:
    # A non-empty queue may still hold these jobs' messages (a big batch drains for minutes):
    # re-publishing them would flood it with duplicates. An empty queue means they were lost.
    by_queue: dict[str, list] = {}
    for job in store.stale_queued(older_than_s):
        by_queue.setdefault(jobtypes.get(job.type).queue, []).append(job)
    sent = 0
    for queue, jobs in by_queue.items():
        if publisher.queue_depth(queue):
            continue
        if queue == "generate":
            sent += publisher.publish_chunks([j.id for j in jobs], queue)
        else:
            sent += publisher.publish(jobs)
    return sent


def run_forever(
    store: JobStore,
    publisher: Publisher,
    *,
    interval_s: float,
    republish_after_s: float,
    stop: threading.Event,
) -> None:
    """Reconcile every ``interval_s`` seconds until ``stop`` is set, logging errors."""
    while not stop.is_set():
        try:
            reconcile_once(store, publisher, republish_after_s)
        except Exception:
            log.exception("reconcile pass failed; will try again")
        stop.wait(interval_s)


def start_thread(
    store: JobStore,
    publisher: Publisher,
    *,
    interval_s: float,
    republish_after_s: float,
    stop: threading.Event,
) -> threading.Thread:
    """Run the reconciler in a daemon thread of this process until ``stop`` is set."""
    thread = threading.Thread(
        target=run_forever,
        name="reconciler",
        daemon=True,
        kwargs={
            "store": store,
            "publisher": publisher,
            "stop": stop,
            "interval_s": interval_s,
            "republish_after_s": republish_after_s,
        },
    )
    thread.start()
    return thread
