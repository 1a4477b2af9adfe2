"""The one launcher: the command line of every process, and the supervisor that keeps them up.

``aigc up``, the tests' stack and the benchmarks' stack all start their processes from these
specs and supervise them with ``Supervisor``: a child that exits unasked is started again after
a backoff that doubles up to ``restart_backoff_max_s`` (and resets once it has stayed up), so
one crash never takes the rest of the stack down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import Settings
from shared.delivery.lanes import consume_order
from shared.observe.export import MULTIPROC_ENV, metrics_env, reset_dir
from shared.observe.logs import configure_logging

log = logging.getLogger(__name__)

STAYED_UP_S = 60.0  # a child up this long has recovered: its restart backoff starts over
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


def free_port(host: str = "127.0.0.1") -> int:
    """Return a free TCP port on ``host``, for a stack started on this machine."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def exec_command(cmd: list[str], env: dict[str, str] | None = None) -> None:
    """Replace this process with ``cmd``, with ``env`` added to the environment."""
    os.execve(cmd[0], cmd, {**os.environ, **(env or {})})


class Child:
    """One supervised process, started in its own process group."""

    def __init__(
        self, spec: ProcessSpec, log_dir: Path | None, cwd: Path | None, env: dict[str, str]
    ) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log" if log_dir else None
        self.cwd = cwd
        self.env = {**env, **spec.env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.wanted = False  # whether the supervisor keeps it running
        self.restarts = 0
        self.backoff_s = 0.0
        self.started_at = 0.0
        self.next_start = 0.0
        self.log_offset = 0

    @property
    def pid(self) -> int | None:
        """Return the pid of the running process, if any."""
        return self.proc.pid if self.alive else None

    @property
    def alive(self) -> bool:
        """Return whether the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the process now."""
        out = self.log_path.open("ab") if self.log_path else None
        self.log_offset = out.tell() if out else 0
        self.proc = subprocess.Popen(
            self.spec.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        if out:
            out.close()
        self.started_at = time.monotonic()

    def signal(self, sig: int) -> None:
        """Send a signal to the whole process group (a Celery parent and its children)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)  # type: ignore[union-attr]

    def stop(
        self,
        grace_s: float = Settings.model_fields["stop_grace_s"].default,
        sig: int | None = None,
    ) -> None:
        """Stop the process with ``sig`` (SIGTERM, gently, by default), then forcefully."""
        self.signal(sig or signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)

    def log_text(self, offset: int = 0) -> str:
        """Return the process's log from ``offset`` on (empty when it logs to the terminal)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[offset:].decode(errors="replace")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until this start of the process logs its ready line (it must log to a file)."""
        deadline = time.monotonic() + timeout_s
        while self.spec.ready_line and self.spec.ready_line not in self.log_text(self.log_offset):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited early:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.spec.name} not ready after {timeout_s}s")
            time.sleep(0.1)


class Supervisor:
    """Starts a stack's processes and restarts any that exit, with a backoff, until stopped."""

    def __init__(
        self,
        specs: list[ProcessSpec],
        settings: Settings,
        *,
        log_dir: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        base = dict(os.environ) if env is None else env
        self.children = {s.name: Child(s, log_dir, cwd, base) for s in specs}
        self._lock = threading.Lock()

    def start_all(self) -> None:
        """Start every process, each metrics folder emptied of a previous run's values."""
        for child in self.children.values():
            if MULTIPROC_ENV in child.spec.env:
                reset_dir(Path(child.spec.env[MULTIPROC_ENV]))
        for name in self.children:
            self.start(name)

    def start(self, name: str) -> None:
        """Start one process (again) and keep it running."""
        with self._lock:
            child = self.children[name]
            child.wanted = True
            if not child.alive:
                child.start()

    def stop(self, name: str, sig: int | None = None) -> None:
        """Stop one process and leave it stopped (``sig=SIGKILL``: with no chance to clean up)."""
        with self._lock:
            child = self.children[name]
            child.wanted = False
        child.stop(self.settings.stop_grace_s, sig=sig)

    def stop_all(self) -> None:
        """Stop every process."""
        with self._lock:
            for child in self.children.values():
                child.wanted = False
        for child in self.children.values():
            child.signal(signal.SIGTERM)
        for child in self.children.values():
            child.stop(self.settings.stop_grace_s)

    def check(self) -> None:
        """Restart every wanted process that has exited, once its backoff has passed."""
        now = time.monotonic()
        with self._lock:
            for child in self.children.values():
                if child.wanted and not child.alive:
                    self._maybe_restart(child, now)

    def _maybe_restart(self, child: Child, now: float) -> None:
        if child.next_start == 0.0:  # just noticed: schedule the restart
            stayed_up = now - child.started_at >= STAYED_UP_S
            base, ceiling = self.settings.restart_backoff_s, self.settings.restart_backoff_max_s
            child.backoff_s = base if stayed_up else min(max(child.backoff_s * 2, base), ceiling)
            child.next_start = now + child.backoff_s
            code = child.proc.returncode if child.proc else None
            log.error(
                "%s exited (status %s); restarting in %.1fs", child.spec.name, code, child.backoff_s
            )
        elif now >= child.next_start:
            child.next_start = 0.0
            child.start()
            child.restarts += 1  # after the start: who sees the count sees the new process

    def run(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        """Supervise until ``stop`` is set, then stop every process."""
        try:
            while not stop.wait(interval_s):
                self.check()
        finally:
            self.stop_all()

    def run_in_thread(self, stop: threading.Event) -> threading.Thread:
        """Supervise in a daemon thread (the tests and the benchmarks)."""
        thread = threading.Thread(target=self.run, args=(stop,), name="supervisor", daemon=True)
        thread.start()
        return thread


def run_stack(settings: Settings, *, bootstrap: bool = True) -> int:
    """Migrate, start the stack and supervise it until SIGINT or SIGTERM."""
    from shared import migrate

    configure_logging(settings)
    migrate.upgrade(settings)
    _announce_new_admin_key(settings)
    supervisor = Supervisor(stack_specs(settings), settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    supervisor.start_all()
    url = settings.public_api_url
    print(f"aigc-queue is up: API at {url}, console {url}/console/ (Ctrl-C stops it)", flush=True)
    if bootstrap:
        from ops.bootstrap import bootstrap_default_models

        threading.Thread(
            target=bootstrap_default_models, args=(settings, stop), daemon=True, name="bootstrap"
        ).start()
    supervisor.run(stop)
    print("aigc-queue stopped", flush=True)
    return 0


def _announce_new_admin_key(settings: Settings) -> None:
    """Create the local admin key on first start and print it, this once."""
    from ops.keys import ensure_local_admin_key

    key = ensure_local_admin_key(settings)
    if key:
        print(
            f"created the local admin API key; it is shown only now and saved to "
            f"{settings.api_key_file} (mode 600), where the CLI reads it:\n  {key}",
            flush=True,
        )
