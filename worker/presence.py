"""A worker's presence: its metrics endpoint, and its announcement to the fleet every heartbeat.

Both run in the worker's parent process, whatever its pool: with prefork the children record
the metrics (in the worker's multiprocess folder) and the parent serves their sum, and its
announcement reads the batching totals from that same sum.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from shared.config import Settings
from shared.db import utcnow
from shared.observe.export import (
    collect_samples,
    exposed_registry,
    sample_total,
    samples_by,
    serve,
)
from shared.observe.fleet import Announcement, PassTotals, Presence
from worker import metrics

log = logging.getLogger(__name__)


def start(consumer: Any, settings: Settings, running: Callable[[], int]) -> None:
    """Serve the worker's metrics (when it has a port) and announce it every ``heartbeat_s``."""
    registry = exposed_registry(settings)
    serve(settings, registry)
    queues = list(consumer.app.amqp.queues.consume_from)
    threading.Thread(
        target=_announce_forever,
        args=(
            Presence(settings),
            settings.heartbeat_s,
            consumer.hostname,
            queues,
            running,
            registry,
        ),
        name="aigc-presence",
        daemon=True,
    ).start()


def _announce_forever(
    presence: Presence,
    every_s: float,
    name: str,
    queues: list[str],
    running: Callable[[], int],
    registry: CollectorRegistry,
) -> None:
    failing = False
    while True:
        try:
            samples = collect_samples(registry)  # once: a multiprocess read opens every file
            presence.announce(
                Announcement(
                    name=name,
                    queues=queues,
                    pid=os.getpid(),
                    running=running(),
                    last_seen=utcnow(),
                    batching=pass_totals(samples),
                    duty_cycle=samples_by(samples, metrics.DUTY_NAME, "model"),
                )
            )
            failing = False
        except Exception as exc:  # Redis away: the fleet misses this worker until it is back
            if not failing:
                log.warning("fleet announcement failed: %s", exc)
            failing = True
        time.sleep(every_s)


def pass_totals(samples: list[Sample]) -> PassTotals:
    """Return the worker's forward passes so far, as its metrics count them."""
    return PassTotals(
        passes=int(sample_total(samples, f"{metrics.PASS_ROWS_NAME}_count")),
        rows=sample_total(samples, f"{metrics.PASS_ROWS_NAME}_sum"),
        wait_s=sample_total(samples, f"{metrics.PASS_WAIT_NAME}_sum"),
        compute_s=sample_total(samples, f"{metrics.PASS_COMPUTE_NAME}_sum"),
    )
