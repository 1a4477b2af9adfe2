"""The reconciler: re-publishes lost messages and rescues jobs whose worker died."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from shared.jobs import JobStatus, JobStore
from shared.publish import Publisher

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
    stale = store.stale_queued(republish_after_s)
    report.republished = publisher.publish(stale)
    if report != ReconcileReport():
        log.info("reconciled: %s", report)
    return report


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
