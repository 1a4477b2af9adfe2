"""Helpers for integration tests: real services, a real worker process, a real API server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
TERMINAL = {"succeeded", "failed", "canceled"}


def wait_for(
    predicate: Callable[[], Any],
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    what: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def free_port() -> int:
    """Return a free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env(values: dict[str, Any]) -> dict[str, str]:
    """Return os.environ plus AIGC_* variables for the given settings values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGC_")}
    env["PYTHONPATH"] = str(ROOT)
    for key, value in values.items():
        env[f"AIGC_{key.upper()}"] = ",".join(value) if isinstance(value, list) else str(value)
    return env


class Process:
    """A child process with its output in a log file, started in its own process group."""

    def __init__(
        self, cmd: list[str], env: dict[str, str], log_path: Path, ready_line: str | None = None
    ) -> None:
        self.cmd, self.env, self.log_path, self.ready_line = cmd, env, log_path, ready_line
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> Process:
        """Start the process and wait for its ready line."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.ready_line:
            wait_for(lambda: self._ready(offset), timeout_s, 0.1, f"{self.cmd[3:6]} to start")
        return self

    def _ready(self, offset: int) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"process exited early:\n{self.tail()}")
        text = self.log_path.read_bytes()[offset:].decode(errors="replace")
        return self.ready_line in text  # type: ignore[operator]

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the process group gently, then forcefully."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group, like a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, n: int = 4000) -> str:
        """Return the end of the process's log."""
        return self.log_path.read_bytes()[-n:].decode(errors="replace")


def worker_process(
    env: dict[str, str],
    log_dir: Path,
    queues: str = "generate,train",
    pool: str = "prefork",
    concurrency: int = 1,
) -> Process:
    """Return (not started) a real Celery worker process, started as ``aigc worker`` starts one."""
    from ops.launcher import worker_command
    from shared.config import Settings

    name = f"test-{os.getpid()}-{time.monotonic_ns()}@%h"
    cmd = worker_command(Settings(), queues=queues, concurrency=concurrency, pool=pool, name=name)
    return Process([*cmd, "--without-heartbeat"], env, log_dir / "worker.log", ready_line=" ready.")


def api_process(env: dict[str, str], log_dir: Path, port: int) -> Process:
    """Return (not started) the API under gunicorn on ``port``, as ``aigc api`` starts it."""
    from ops.launcher import api_command
    from shared.config import Settings

    cmd = api_command(Settings(api_host="127.0.0.1", api_port=port, api_threads=4), workers=2)
    return Process(cmd, env, log_dir / "api.log", ready_line="Booting worker")


class Api:
    """A requests session bound to the API's base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()

    def __getattr__(self, method: str) -> Callable[..., requests.Response]:
        def call(path: str, **kwargs: Any) -> requests.Response:
            return self.http.request(method.upper(), self.base_url + path, timeout=30, **kwargs)

        return call

    def submit(
        self,
        type_: str,
        params: dict[str, Any] | None = None,
        model: str | None = None,
        expect: int = 202,
    ) -> dict[str, Any]:
        """Submit a job and return its body."""
        resp = self.post("/v1/jobs", json={"type": type_, "model": model, "params": params or {}})
        assert resp.status_code == expect, resp.text
        return resp.json()

    def job(self, job_id: str) -> dict[str, Any]:
        """Return the job."""
        resp = self.get(f"/v1/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait(
        self, job_id: str, timeout_s: float = 60.0, statuses: set[str] = TERMINAL
    ) -> dict[str, Any]:
        """Poll until the job reaches one of ``statuses``."""
        return wait_for(
            lambda: (j := self.job(job_id))["status"] in statuses and j,
            timeout_s,
            0.1,
            f"job {job_id} to reach {sorted(statuses)}",
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until /healthz answers."""

        def up() -> bool:
            try:
                return self.get("/healthz").status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, timeout_s, 0.2, "the API to answer")
