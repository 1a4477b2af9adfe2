"""Starts and stops the processes of a single-machine stack (``aigc up``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from shared.config import Settings

log = logging.getLogger(__name__)

STOP_GRACE_S = 15.0


def api_command(settings: Settings, workers: int = 2) -> list[str]:
    """Return the command line that serves the API under gunicorn."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{settings.api_host}:{settings.api_port}",
        "--workers",
        str(workers),
        "--threads",
        str(settings.api_threads),
        "--graceful-timeout",
        "10",
        "--access-logfile",
        "-",
        "api.wsgi:app",
    ]


def worker_command(
    settings: Settings,
    *,
    queues: str,
    concurrency: int,
    pool: str = "prefork",
    name: str | None = None,
) -> list[str]:
    """Return the command line of a Celery worker (started by name: the API never imports it)."""
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "-Q",
        queues,
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


def exec_command(cmd: list[str], env: dict[str, str] | None = None) -> None:
    """Replace this process with ``cmd``, with ``env`` added to the environment."""
    if env:
        os.execve(cmd[0], cmd, {**os.environ, **env})
    os.execv(cmd[0], cmd)


def run_stack(
    settings: Settings, *, bootstrap: bool = True, on_ready: Callable[[], None] | None = None
) -> int:
    """Migrate, start the API and a worker, reconcile in-process, and stop all on a signal."""
    from shared import migrate
    from shared.delivery.reconciler import start_thread
    from shared.services import build_services

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    migrate.upgrade(settings)
    procs = [
        subprocess.Popen(api_command(settings, workers=2)),
        # Two workers so that generation is never stuck behind a long training job.
        subprocess.Popen(
            worker_command(
                settings,
                queues="generate",
                concurrency=settings.generate_threads,
                pool="threads",
                name="generate@%h",
            )
        ),
        subprocess.Popen(worker_command(settings, queues="train", concurrency=1, name="train@%h")),
    ]
    svc = build_services(settings)
    stop = threading.Event()
    start_thread(
        svc.store,
        svc.publisher,
        interval_s=settings.reconcile_interval_s,
        republish_after_s=settings.republish_after_s,
        stop=stop,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"aigc-queue is up: API at {settings.public_api_url} (Ctrl-C stops it)", flush=True)
    if bootstrap:
        _bootstrap(settings, stop)
    if on_ready:
        on_ready()
    return _supervise(procs, stop)


def _bootstrap(settings: Settings, stop: threading.Event) -> None:
    try:
        from ops.bootstrap import bootstrap_default_models
    except ImportError:
        return
    threading.Thread(
        target=bootstrap_default_models, args=(settings, stop), daemon=True, name="bootstrap"
    ).start()


def _supervise(procs: list[subprocess.Popen[bytes]], stop: threading.Event) -> int:
    code = 0
    while not stop.wait(0.5):
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            log.error("a child process exited (%s); stopping the stack", dead[0].args[:4])
            code = 1
            break
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    print("aigc-queue stopped", flush=True)
    return code
