"""The processes of aigc-queue: each one's command line and environment, and the one-machine stack.

``aigc up``, ``aigc api`` and ``aigc worker``, the tests' stack and the benchmarks' stack all
build their processes from these specs, and start them with ``ops.launcher``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from shared.config import Settings
from shared.delivery.lanes import consume_order
from shared.observe.export import metrics_env

CELERY_READY = " ready."
GUNICORN_READY = "Booting worker"
JSON_GUNICORN_LOGGER = "ops.gunicorn_logs.JsonLogger"
# `aigc up` gives each process with a metrics endpoint its own port: metrics_port plus this.
METRICS_PORT_OFFSETS = {"generate": 0, "train": 1, "reconciler": 2}
TRAIN_SLOTS = 2  # trainings the one-machine stack runs at once


@dataclass
class ProcessSpec:
    """One process of a stack: its name, command line and extra environment."""

    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_line: str | None = None  # what its log says once it serves


def api_command(settings: Settings) -> list[str]:
    """Return the command line that serves the API under gunicorn's gevent workers.

    gevent: a long poll (and, later, a stream) is a greenlet waiting on an event, not a thread,
    so hundreds of them never starve other requests; psycopg 3 and redis-py cooperate with it.
    """
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{settings.api_host}:{settings.api_port}",
        "--workers",
        str(settings.api_workers),
        "--worker-class",
        "gevent",
        "--worker-connections",
        str(settings.api_connections),
        "--graceful-timeout",
        "10",
        "--no-control-socket",
        "--access-logfile",
        "-",
        *(["--logger-class", JSON_GUNICORN_LOGGER] if settings.log_format == "json" else []),
        "api.wsgi:app",
    ]


def worker_command(
    *,
    queues: str,
    concurrency: int,
    pool: str = "prefork",
    name: str | None = None,
    quiet: bool = False,
) -> list[str]:
    """Return the command line of a Celery worker (started by name: the API never imports it).

    ``quiet`` leaves out Celery's banner, the one thing it prints that is not a log line.
    """
    cmd = [
        sys.executable,
        "-m",
        "celery",
        *(["--quiet"] if quiet else []),
        "-A",
        "worker.app",
        "worker",
        "-Q",
        consume_order(queues),
        "-c",
        str(concurrency),
        "--pool",
        pool,
        "-l",
        "info",
        "--without-gossip",
        "--without-mingle",
    ]
    if name:
        cmd += ["-n", name]
    if queues == "train":
        # Recycling the child is the only way to give back all memory after a training job.
        cmd += ["--max-tasks-per-child", "1"]
    return cmd


def reconciler_command() -> list[str]:
    """Return the command line of the reconciler."""
    return [sys.executable, "-m", "ops.cli", "reconcile"]


def default_pool(settings: Settings, queues: str, pool: str | None) -> tuple[str, int]:
    """Return the pool and concurrency a worker gets unless told otherwise.

    A generate-only worker runs jobs in threads that feed one model-owner thread, so concurrent
    jobs are batched (TensorFlow and fork do not mix, and prefork -c 1 never has two jobs).
    Anything that trains uses prefork: hard time limits, and a fresh child per training job.
    """
    if pool is None:
        pool = "threads" if queues == "generate" else "prefork"
    concurrency = settings.generate_threads if pool == "threads" else settings.worker_concurrency
    return pool, concurrency


def gpu_env(settings: Settings, gpu: str | None) -> dict[str, str]:
    """Return the environment a GPU worker needs: its one device, and memory on demand.

    TensorFlow would otherwise map all GPU memory at start, and JAX would preallocate 75% of it,
    which leaves nothing for a second process and hides the real footprint.
    """
    env = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if not settings.gpu_memory_growth:
        env = {k: v for k, v in env.items() if k == "CUDA_VISIBLE_DEVICES"}
    return env


def stack_port(settings: Settings, name: str) -> int | None:
    """Return the metrics port of one process of `aigc up` (None: metrics ports are off)."""
    return settings.metrics_port + METRICS_PORT_OFFSETS[name] if settings.metrics_port else None


def stack_specs(settings: Settings, *, generate_threads: int | None = None) -> list[ProcessSpec]:
    """Return the processes of a one-machine stack: API, a generate and a train worker, reconciler.

    Two workers, so that generation is never stuck behind a long training job; the train
    worker runs two trainings at once, so the default models train side by side on first start
    and a tenant's training never waits for the whole of a long one.
    """
    threads = generate_threads or settings.generate_threads

    def worker(name: str, queues: str, concurrency: int, pool: str, node: str) -> ProcessSpec:
        cmd = worker_command(
            queues=queues, concurrency=concurrency, pool=pool, name=node, quiet=quiet
        )
        env = metrics_env(settings, name, stack_port(settings, name))
        return ProcessSpec(name, cmd, env, CELERY_READY)

    quiet = settings.log_format == "json"
    return [
        ProcessSpec(
            "api", api_command(settings), metrics_env(settings, "api", None), GUNICORN_READY
        ),
        worker("generate", "generate", threads, "threads", "gen@%h"),
        worker("train", "train", TRAIN_SLOTS, "prefork", "train@%h"),
        ProcessSpec(
            "reconciler",
            reconciler_command(),
            metrics_env(settings, None, stack_port(settings, "reconciler")),
        ),
    ]
