"""Starts the real stack for the benchmarks: PostgreSQL, Redis, the API under gunicorn, workers."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

from ops.launcher import (
    CELERY_READY,
    GUNICORN_READY,
    Child,
    ProcessSpec,
    api_command,
    reconciler_command,
    worker_command,
)
from shared.config import Settings

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


def start(spec: ProcessSpec, env: dict[str, str], workdir: Path) -> Child:
    """Start one process of the bench stack with the project's launcher, and wait until ready."""
    child = Child(spec, workdir, ROOT, env)
    child.start()
    child.wait_ready()
    return child


def start_api(env: dict[str, str], workdir: Path, port: int, workers: int = 2) -> Child:
    """Start the API as ``aigc up`` does and wait for /healthz."""
    settings = Settings(api_host="127.0.0.1", api_port=port, api_workers=workers)
    child = start(
        ProcessSpec("api", api_command(settings), ready_line=GUNICORN_READY), env, workdir
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return child
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
) -> Child:
    """Start a Celery worker with the launcher's command line (``app`` swaps in a baseline)."""
    cmd = worker_command(queues=queues, concurrency=concurrency, pool=pool, name=f"{name}@%h")
    cmd[cmd.index("worker.app")] = app
    return start(ProcessSpec(name, cmd, ready_line=CELERY_READY), env, workdir)


def start_reconciler(env: dict[str, str], workdir: Path) -> Child:
    """Start ``aigc reconcile``, as production runs it beside the workers."""
    return start(ProcessSpec("reconciler", reconciler_command()), env, workdir)
