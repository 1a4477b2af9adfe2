"""The one launcher: starts the processes that ``ops.processes`` describes and keeps them up.

``aigc up``, the tests' stack and the benchmarks' stack all supervise their processes with
``Supervisor``: a child that exits unasked is started again after a backoff that doubles up to
``restart_backoff_max_s`` (and resets once it has stayed up), so one crash never takes the rest
of the stack down. ``aigc api`` and ``aigc worker`` replace themselves with theirs
(``exec_command``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from ops.processes import ProcessSpec, stack_specs
from shared.config import Settings
from shared.observe.export import MULTIPROC_ENV, reset_dir
from shared.observe.logs import configure_logging
from shared.tenants.keys import KeyStore

log = logging.getLogger(__name__)

STAYED_UP_S = 60.0  # a child up this long has recovered: its restart backoff starts over


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
    from shared.services import build_services

    configure_logging(settings)
    migrate.upgrade(settings)
    svc = build_services(settings)  # this process's parts: the admin key and the bootstrap's
    _announce_new_admin_key(svc.keys, settings)
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
            target=bootstrap_default_models,
            args=(svc.store, svc.publisher, svc.registry, settings, stop),
            daemon=True,
            name="bootstrap",
        ).start()
    supervisor.run(stop)
    svc.close()
    print("aigc-queue stopped", flush=True)
    return 0


def _announce_new_admin_key(keys: KeyStore, settings: Settings) -> None:
    """Create the local admin key on first start and print it, this once."""
    from ops.keys import ensure_local_admin_key

    key = ensure_local_admin_key(keys, settings)
    if key:
        print(
            f"created the local admin API key; it is shown only now and saved to "
            f"{settings.api_key_file} (mode 600), where the CLI reads it:\n  {key}",
            flush=True,
        )
