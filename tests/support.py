"""Helpers for integration tests: real services, a real worker process, a real API server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import requests
import sseclient

from ops.launcher import Child, Supervisor, free_port
from shared.jobs.status import TERMINAL
from shared.services import Services
from shared.tenants.keys import USER_SCOPES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = ROOT / "docker-compose.yml"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Under pytest-xdist each worker ("gw0", "gw1", ...) is a test run of its own: the first keeps
# the database it is given, the others take one beside it, and each its own Redis pair.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
_PG_BASE = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_URL = f"{_PG_BASE}_gw{XDIST_WORKER}" if XDIST_WORKER else _PG_BASE
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# Redis databases in pairs (broker, status cache), one pair per xdist worker ("14,15,8,9"):
# another pair lets two test runs share one server.
_REDIS_DBS = [int(x) for x in os.environ.get("TEST_REDIS_DBS", "14,15").split(",")]
if len(_REDIS_DBS) < 2 * XDIST_WORKER + 2:
    raise RuntimeError(f"TEST_REDIS_DBS needs a pair of databases per xdist worker: {_REDIS_DBS}")
BROKER_DB, CACHE_DB = _REDIS_DBS[2 * XDIST_WORKER : 2 * XDIST_WORKER + 2]
# What the suite's own client may do: everything a user does, nothing an admin does.


def wait_for(
    predicate: Callable[[], Any],
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    what: str = "condition",
    seen: Callable[[], Any] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; on timeout, fail with what was seen.

    That is ``seen()`` where given (the state the condition is judged on), else the last value.
    """
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    last = seen() if seen is not None else value
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; seen: {last!r}")


def free_ports(count: int, host: str = "127.0.0.1") -> int:
    """Return the first of ``count`` consecutive free TCP ports on ``host``."""
    for _ in range(100):
        first = free_port(host)
        try:
            with contextlib.ExitStack() as held:
                for port in range(first, first + count):
                    held.enter_context(socket.socket()).bind((host, port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports on {host}")


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database a URL names, if it does not exist yet."""
    from sqlalchemy import create_engine, text

    base, _, name = url.rpartition("/")
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def scratch_database(suffix: str) -> str:
    """Return the URL of an empty PostgreSQL database beside the test one (created if needed).

    In-process tests use it so that they never drop the tables the running stack uses.
    """
    from sqlalchemy import create_engine, text

    url = f"{PG_URL}_{suffix}"
    ensure_database(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def settings_env(values: dict[str, Any]) -> dict[str, str]:
    """Return os.environ plus AIGC_* variables for the given settings values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGC_")}
    env["PYTHONPATH"] = str(ROOT)
    for key, value in values.items():
        env[f"AIGC_{key.upper()}"] = ",".join(value) if isinstance(value, list) else str(value)
    return env


class Handle:
    """One process of the test stack, as the tests stop, start and kill it."""

    def __init__(self, supervisor: Supervisor, name: str) -> None:
        self.supervisor = supervisor
        self.name = name

    @property
    def child(self) -> Child:
        """Return the supervised child."""
        return self.supervisor.children[self.name]

    def start(self, timeout_s: float = 60.0) -> Handle:
        """Start the process and wait for its ready line."""
        self.supervisor.start(self.name)
        self.child.wait_ready(timeout_s)
        return self

    def stop(self) -> None:
        """Stop the process gently (the supervisor leaves it stopped)."""
        self.supervisor.stop(self.name)

    def kill(self) -> None:
        """SIGKILL the whole process group, like a power cut; the supervisor restarts it."""
        self.child.signal(signal.SIGKILL)

    def wait_restarted(self, since: int, timeout_s: float = 60.0) -> None:
        """Wait until the supervisor has restarted the process more than ``since`` times."""
        wait_for(lambda: self.child.restarts > since, timeout_s, 0.1, f"{self.name} restart")
        self.child.wait_ready(timeout_s)

    def tail(self, n: int = 4000) -> str:
        """Return the end of the process's log."""
        return self.child.log_text()[-n:]


def read_events(
    api: Api, path: str, last_id: str | None = None, stop_after: int | None = None
) -> list[Any]:
    """Read an event stream (sseclient events) until it closes, or its first ``stop_after``."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    events = []
    with api.get(path, headers=headers, stream=True, timeout=60) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        for message in sseclient.SSEClient(resp.iter_content(chunk_size=None)).events():
            events.append(message)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


class Api:
    """A requests session bound to the API's base URL, sending one tenant's key."""

    def __init__(
        self, base_url: str, key: str | None = None, tenant_id: uuid.UUID | None = None
    ) -> None:
        self.base_url = base_url
        self.key = key
        self.tenant_id = tenant_id
        self.http = requests.Session()
        if key:
            self.http.headers["Authorization"] = f"Bearer {key}"

    @property
    def auth(self) -> dict[str, str]:
        """Return the header that carries this client's key (for requests sent otherwise)."""
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def __getattr__(self, method: str) -> Callable[..., requests.Response]:
        def call(path: str, **kwargs: Any) -> requests.Response:
            kwargs.setdefault("timeout", 30)
            return self.http.request(method.upper(), self.base_url + path, **kwargs)

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
        self, job_id: str, timeout_s: float = 60.0, statuses: Iterable[str] = TERMINAL
    ) -> dict[str, Any]:
        """Poll until the job reaches one of ``statuses``; a 503 means "ask again", as it says."""

        def reached() -> dict[str, Any] | None:
            resp = self.get(f"/v1/jobs/{job_id}")
            if resp.status_code == 503 and resp.headers.get("Retry-After"):
                return None
            assert resp.status_code == 200, resp.text
            job = resp.json()
            return job if job["status"] in statuses else None

        return wait_for(reached, timeout_s, 0.1, f"job {job_id} to reach {sorted(statuses)}")

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until /healthz answers."""

        def up() -> bool:
            try:
                return self.get("/healthz").status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, timeout_s, 0.2, "the API to answer")


def tenant_api(
    services: Services, base_url: str, tenant: str, scopes: Sequence[str] = USER_SCOPES
) -> Api:
    """Create a key for ``tenant`` (created if new) and return a client that sends it."""
    key, row = services.keys.create(tenant, "test", list(scopes))
    return Api(base_url, key, row.tenant_id)
