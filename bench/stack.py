"""Starts the real stack for the benchmarks: PostgreSQL, Redis, the API under gunicorn, workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/aigc_bench"
REDIS = "redis://127.0.0.1:6379"


def fresh_database() -> None:
    """Create (or empty) the bench database."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = 'aigc_bench'")):
            conn.execute(text("CREATE DATABASE aigc_bench"))
    admin.dispose()
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def settings_values(workdir: Path) -> dict[str, Any]:
    """Return the AIGC settings of the bench stack."""
    return {
        "database_url": PG_URL,
        "broker_url": f"{REDIS}/12",
        "redis_url": f"{REDIS}/13",
        "artifact_dir": str(workdir / "artifacts"),
        "plugins": "bench.plugins",
        "republish_after_s": 600,
        "lease_s": 60,
        "heartbeat_s": 10,
    }


def env_for(values: dict[str, Any], **extra: Any) -> dict[str, str]:
    """Return the environment of a stack process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGC_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"AIGC_{k.upper()}": str(v) for k, v in {**values, **extra}.items()})
    return env


def free_port() -> int:
    """Return a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """A stack process in its own process group, logging to a file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        log = (workdir / f"{name}.log").open("ab")
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        """Stop the process group."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def start_api(env: dict[str, str], workdir: Path, port: int, workers: int = 2) -> Proc:
    """Start gunicorn and wait for /healthz."""
    from ops.launcher import api_command
    from shared.config import Settings

    settings = Settings(api_host="127.0.0.1", api_port=port, api_threads=64)
    cmd = api_command(settings, workers)
    proc = Proc("api", cmd, env, workdir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError("the API did not start")


def start_worker(
    env: dict[str, str],
    workdir: Path,
    name: str,
    pool: str,
    concurrency: int,
    app: str = "worker.app",
    queues: str = "generate",
) -> Proc:
    """Start a Celery worker and give it time to come up."""
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-Q",
        queues,
        "--pool",
        pool,
        "-c",
        str(concurrency),
        "-l",
        "warning",
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"{name}@%h",
    ]
    proc = Proc(name, cmd, env, workdir)
    time.sleep(4)
    return proc


def start_reconciler(env: dict[str, str], workdir: Path) -> Proc:
    """Start ``aigc reconcile``, as production runs it beside the workers."""
    return Proc("reconciler", [sys.executable, "-m", "ops.cli", "reconcile"], env, workdir)
