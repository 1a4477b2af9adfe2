"""Exposing a process's metrics: its own, or (multiprocess mode) those of its whole family.

Under gunicorn and Celery's prefork pool several processes record the same metrics. The launcher
gives each such family a folder of its own, which prometheus_client reads from
``PROMETHEUS_MULTIPROC_DIR`` at import: every process keeps its values in files there, and an
exposition sums them, so a scrape sees the family whatever process answers it. Counters of a
process that exited stay in the sum, so they never go back. A process started without a folder
(the reconciler, a test) exposes its own registry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from shared.config import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def safe_name(name: str) -> str:
    """Return ``name`` (a process family, a worker's node name) fit to name a file."""
    return re.sub(r"[^\w.@-]", "_", name)


def family_dir(settings: Settings, name: str) -> Path:
    """Return the metrics folder of a family of processes (absolute: children may move)."""
    return (settings.metrics_dir / safe_name(name)).resolve()


def reset_dir(folder: Path) -> None:
    """Create a family's folder, or empty it of a previous run's values."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


def metrics_env(settings: Settings, family: str | None, port: int | None) -> dict[str, str]:
    """Return a process's metrics environment: its family's folder, and its own port.

    The folder puts prometheus_client in multiprocess mode, for a process whose children record
    metrics too (gunicorn's workers, Celery's prefork pool); the launcher empties it at start.
    """
    env = {MULTIPROC_ENV: str(family_dir(settings, family))} if family else {}
    if port:
        env["AIGC_METRICS_PORT"] = str(port)
    return env


def exposed_registry(settings: Settings, *extra: Collector) -> CollectorRegistry:
    """Return what an exposition reads: the family's files, else this process's metrics."""
    registry = CollectorRegistry()
    if settings.process_metrics_dir is not None:
        MultiProcessCollector(registry, path=str(settings.process_metrics_dir))
    else:
        registry.register(REGISTRY)
    for collector in extra:
        registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """Return the registry's samples in Prometheus's text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve(settings: Settings, registry: CollectorRegistry) -> bool:
    """Serve the registry on ``metrics_host:metrics_port`` from a daemon thread (0: not at all).

    A port already taken costs the process its metrics, not its work: it logs and goes on.
    """
    if not settings.metrics_port:
        return False
    try:
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    except OSError as exc:
        log.error("no metrics endpoint on port %d: %s", settings.metrics_port, exc)
        return False
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    return True


def collect_samples(registry: CollectorRegistry) -> list[Sample]:
    """Return every sample in the registry, read once (multiprocess: one pass over the files)."""
    return [sample for family in registry.collect() for sample in family.samples]


def samples_by(samples: Iterable[Sample], name: str, label: str) -> dict[str, float]:
    """Return each value of ``label`` with its sample called ``name``."""
    return {s.labels[label]: s.value for s in samples if s.name == name and label in s.labels}


def sample_total(samples: Iterable[Sample], name: str) -> float:
    """Return the sum of every sample called ``name`` (all label values)."""
    return sum(s.value for s in samples if s.name == name)
