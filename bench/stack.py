"""Starts the real stack for the benchmarks: PostgreSQL, Redis, the API under gunicorn, workers.

Every process comes from the project's one launcher (``ops.launcher``); this module only picks
their settings and knows which process trees make up each component, for ``bench.cpu``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import redis
import requests
from sqlalchemy import create_engine, text

from bench import cpu
from ops.launcher import Child, free_port
from ops.processes import (
    CELERY_READY,
    GUNICORN_READY,
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
# The stack's broker and status cache; bench.raw_celery's broker and result backend.
BROKER_DB, CACHE_DB, RAW_BROKER_DB, RAW_BACKEND_DB = REDIS_DBS = (12, 13, 11, 10)
THREADS = 64  # the generate worker's job threads, and its rows per forward pass
API_WORKERS = os.cpu_count() or 2  # gunicorn workers of each API: one per core
QUIET_CORES = 0.1  # a stack using less than this share of one core has finished warming up


def check_unshared() -> None:
    """Refuse to start while another program uses the bench's database or Redis databases.

    Two stacks on one broker database take each other's messages (and drop them: their jobs are
    in the other's database), and a shared server's CPU would be charged to the bench.
    """
    clients = redis.Redis.from_url(REDIS).client_list()
    busy = sorted({int(c["db"]) for c in clients} & set(REDIS_DBS))
    admin = create_engine(PG_ADMIN_URL)
    with admin.connect() as conn:
        sessions = conn.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = 'aigc_bench'")
        )
    admin.dispose()
    if busy or sessions:
        raise RuntimeError(
            f"Redis databases {busy} or the aigc_bench database ({sessions} sessions) are in use "
            "by another program (a test run with TEST_REDIS_DBS in 10-13?); wait until it ends"
        )


def fresh_database() -> None:
    """Create (or empty) the bench database, once nothing else uses it or its Redis databases."""
    check_unshared()
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
        "broker_url": f"{REDIS}/{BROKER_DB}",
        "redis_url": f"{REDIS}/{CACHE_DB}",
        "artifact_dir": str(workdir / "artifacts"),
        "plugins": "bench.plugins",
        "republish_after_s": 600,
        "lease_s": 60,
        "heartbeat_s": 10,
        # Keys on, as in production (row 14 measures them against an open API), and a limit
        # that never caps the rates measured: the limiter's Redis counter is still paid.
        "auth_required": True,
        "rate_limit": "1000000/second",
    }


def embedded_values(workdir: Path) -> dict[str, Any]:
    """Return the settings of a bench stack on the embedded defaults, as ``make run`` serves."""
    values = settings_values(workdir)
    for server in ("database_url", "broker_url", "redis_url"):
        del values[server]
    return {
        **values,
        "database_url": f"sqlite:///{workdir}/aigc.sqlite3",
        "broker_url": "filesystem://",
        "broker_dir": str(workdir / "broker"),
    }


def env_for(values: dict[str, Any], **extra: Any) -> dict[str, str]:
    """Return the environment of a stack process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGC_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"AIGC_{k.upper()}": str(v) for k, v in {**values, **extra}.items()})
    return env


def postgres_pid() -> int:
    """Return the postmaster's pid: the parent of a backend (every server process is its child)."""
    engine = create_engine(PG_ADMIN_URL)
    with engine.connect() as conn:  # read while the backend lives: it exits with its connection
        stat = Path(f"/proc/{conn.scalar(text('SELECT pg_backend_pid()'))}/stat").read_text()
    engine.dispose()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def redis_pid() -> int:
    """Return the pid of the redis-server the stack uses (this machine has others)."""
    return int(redis.Redis.from_url(REDIS).info("server")["process_id"])


class Stack:
    """The bench's processes, started by the launcher, and the pids to read their CPU from."""

    def __init__(self, workdir: Path, values: dict[str, Any], *, embedded: bool = False) -> None:
        self.workdir = workdir
        self.values = values
        self.ports = {"api": free_port()}
        self.children: dict[str, Child] = {}
        # The embedded defaults have no servers: SQLite and the broker's files are in-process.
        self.servers = {} if embedded else {"postgres": postgres_pid(), "redis": redis_pid()}

    @property
    def base_url(self) -> str:
        """Return the API's base URL."""
        return self.url("api")

    def url(self, api: str) -> str:
        """Return the base URL of the API process named ``api``."""
        return f"http://127.0.0.1:{self.ports[api]}"

    def env(self, **extra: Any) -> dict[str, str]:
        """Return the environment of a stack process, with extra settings."""
        return env_for(self.values, **extra)

    def _start(self, spec: ProcessSpec, env: dict[str, str]) -> Child:
        child = Child(spec, self.workdir, ROOT, env)
        self.children[spec.name] = child
        child.start()
        child.wait_ready(120)
        return child

    def start_api(self, name: str = "api", workers: int = API_WORKERS, **extra: Any) -> Child:
        """Start an API as ``aigc up`` does, with extra settings, and wait for /healthz."""
        port = self.ports.setdefault(name, free_port())
        settings = Settings(api_host="127.0.0.1", api_port=port, api_workers=workers)
        spec = ProcessSpec(name, api_command(settings), ready_line=GUNICORN_READY)
        child = self._start(spec, self.env(**extra))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url(name)}/healthz", timeout=1).ok:
                    return child
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("the API did not start")

    def start_worker(
        self,
        name: str,
        *,
        queues: str,
        pool: str,
        concurrency: int,
        env: dict[str, str],
        app: str | None = None,
        queue: str | None = None,
    ) -> Child:
        """Start a Celery worker from the launcher's command line (a baseline sets app, queue)."""
        cmd = worker_command(queues=queues, concurrency=concurrency, pool=pool, name=f"{name}@%h")
        if app:
            cmd[cmd.index("worker.app")] = app
        if queue:
            cmd[cmd.index("-Q") + 1] = queue
        return self._start(ProcessSpec(name, cmd, ready_line=CELERY_READY), env)

    def start_generate(self) -> Child:
        """Start the generate worker as ``aigc up`` does: job threads feeding the model owner."""
        env = self.env(generate_threads=THREADS, generate_max_batch=THREADS)
        return self.start_worker(
            "gen", queues="generate", pool="threads", concurrency=THREADS, env=env
        )

    def start_reconciler(self) -> Child:
        """Start ``aigc reconcile``, as production runs it beside the workers."""
        return self._start(ProcessSpec("reconciler", reconciler_command()), self.env())

    def stop(self, name: str) -> None:
        """Stop one process of the stack."""
        self.children.pop(name).stop()

    def close(self) -> None:
        """Stop every process."""
        for name in list(self.children):
            self.stop(name)

    def platform(self) -> dict[str, int]:
        """Return the roots of every platform process: API, worker, reconciler and servers."""
        return self.roots(*self.servers, api="api", worker="gen", reconciler="reconciler")

    def roots(self, *servers: str, **processes: str) -> dict[str, int]:
        """Return component -> root pid for the named servers and children (``worker="gen"``)."""
        pids = {comp: self.children[name].pid for comp, name in processes.items()}
        missing = [comp for comp, pid in pids.items() if pid is None]
        if missing:
            raise RuntimeError(f"not running: {missing}")
        return {**pids, **{name: self.servers[name] for name in servers}}  # type: ignore[dict-item]

    def quiet(self, timeout_s: float = 45.0) -> None:
        """Wait until the stack's processes have finished warming up (imports, compiles)."""
        roots = {n: c.pid for n, c in self.children.items() if c.pid is not None}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            before, started = cpu.snapshot(roots), time.monotonic()
            time.sleep(1.0)
            after = cpu.snapshot(roots)
            busy = sum(after[n] - before[n] for n in roots) / 1000 / (time.monotonic() - started)
            if busy < QUIET_CORES:
                return
        print(f"note: the stack still uses {busy:.2f} cores after {timeout_s:.0f} s", flush=True)
