"""Fixtures: real PostgreSQL and Redis, and the real stack (API, workers, reconciler) as processes.

A missing service fails the run under CI=true and skips the test elsewhere, with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from sqlalchemy import create_engine, text

from ops.launcher import Supervisor, free_port
from ops.processes import stack_specs
from shared import migrate
from shared.config import Settings
from shared.services import Services, build_services
from tests.s3server import S3Server, missing_s3
from tests.services import PrivateRedis, missing_servers, stack_values
from tests.support import (
    BROKER_DB,
    CACHE_DB,
    CI,
    COMPOSE_PATH,
    PG_URL,
    REDIS_HOST,
    REDIS_PORT,
    ROOT,
    USER_SCOPES,
    Api,
    Handle,
    ensure_database,
    scratch_database,
    settings_env,
    tenant_api,
)

BACKENDS = ["postgres", "embedded"]
# A fresh training child's first graph compile holds the GIL for seconds on two busy cores, and
# its lease keeper cannot renew the suite's 2 s lease meanwhile: the train worker leases longer.
TRAIN_LEASE = {"train": {"AIGC_LEASE_S": "8", "AIGC_HEARTBEAT_S": "1"}}
TEST_SETTINGS: dict[str, Any] = {
    "lease_s": 2.0,
    "heartbeat_s": 0.5,
    "cancel_poll_s": 0.1,
    "republish_after_s": 3.0,
    "reconcile_interval_s": 0.5,
    "retry_backoff_s": 0.5,
    "retry_backoff_max_s": 4.0,
    "stuck_grace_s": 1.0,
    "restart_backoff_s": 0.2,
    "restart_backoff_max_s": 2.0,
    # A stop's SIGKILL comes this long after its SIGTERM (15 s by default): the tests stop and
    # tear down processes often, some with a thread hung for good; test_restarts sets its own.
    "stop_grace_s": 5.0,
    "broker_poll_interval_s": 0.05,
    # Keep worker restarts cheap: the platform tests never need Keras in the worker.
    "warmup_imports": False,
    # One loaded model per worker: every switch between models evicts one, under load.
    "model_cache_size": 1,
    "max_attempts": 3,
    "plugins": ["tests.fixtures.jobtypes"],
    # The suite's clients run hundreds of requests a second; the limit has its own test.
    "rate_limit": "100000/second",
    # Event streams send a heartbeat after a second of quiet, so a test sees one.
    "sse_heartbeat_s": 1.0,
    # Webhooks go to the tests' receiver on 127.0.0.2 over http, retried within seconds; every
    # other loopback address stays refused (the SSRF tests listen on 127.0.0.1).
    "webhook_allow_http": True,
    "webhook_allow_hosts": ["127.0.0.2"],
    "webhook_backoff_s": 2.0,
    "webhook_timeout_s": 2.0,
    "webhook_poll_s": 0.25,
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of the tests that `make test` runs in a pass of their own."""
    config.addinivalue_line(
        "markers", "outage: holds a private server down for a minute; run beside the suite"
    )


def need(service: str, error: Exception | None) -> None:
    """Fail (CI) or skip (elsewhere) when a required service is unreachable."""
    if error is None:
        return
    message = f"{service} is not reachable ({error}); start it (see .ci/run) to run this test"
    if CI:
        pytest.fail(message)
    pytest.skip(message)


def _check_postgres() -> Exception | None:
    try:
        ensure_database(PG_URL)  # another run's database (TEST_DATABASE_URL) is made on first use
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return exc
    return None


def _check_redis() -> Exception | None:
    try:
        redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=1).ping()
    except Exception as exc:
        return exc
    return None


def reset_postgres(url: str) -> None:
    """Drop every table so each run starts from the migrations."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def backend_settings(backend: str, tmp: Path) -> dict[str, Any]:
    """Return the settings values of a backend: PostgreSQL + Redis, or the embedded defaults."""
    values = dict(TEST_SETTINGS, artifact_dir=tmp / "artifacts")
    if backend == "postgres":
        need("PostgreSQL", _check_postgres())
        need("Redis", _check_redis())
        reset_postgres(PG_URL)
        for db in (BROKER_DB, CACHE_DB):
            redis.Redis(REDIS_HOST, REDIS_PORT, db=db).flushdb()
        values.update(
            database_url=PG_URL,
            broker_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
            redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{CACHE_DB}",
        )
    else:
        values.update(
            database_url=f"sqlite:///{tmp}/aigc.sqlite3",
            broker_url="filesystem://",
            broker_dir=tmp / "broker",
        )
    return values


@dataclass
class Stack:
    """A running system under test and handles to restart its parts."""

    backend: str
    settings: Settings
    env: dict[str, str]
    services: Services
    supervisor: Supervisor
    api: Api
    tmp: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def worker(self) -> Handle:
        """Return the generate worker (thread pool), which runs the test job types."""
        return Handle(self.supervisor, "generate")

    @property
    def api_server(self) -> Handle:
        """Return the API server."""
        return Handle(self.supervisor, "api")

    def client(self, tenant: str, scopes: Sequence[str] = USER_SCOPES) -> Api:
        """Return an API client with a new key of ``tenant`` (created if new)."""
        return tenant_api(self.services, self.api.base_url, tenant, scopes)

    def handle(self, name: str) -> Handle:
        """Return one process of the stack by name."""
        return Handle(self.supervisor, name)

    def effects(self, job_id: str, name: str) -> list[str]:
        """Return the lines a test job wrote to one of its effect files."""
        path = self.settings.artifact_dir / "effects" / f"{job_id}.{name}"
        return path.read_text().splitlines() if path.exists() else []


def start_stack(
    settings: Settings,
    env: dict[str, str],
    log_dir: Path,
    process_env: dict[str, dict[str, str]] | None = None,
) -> Supervisor:
    """Start the stack's processes as ``aigc up`` does, and wait until each is ready.

    ``process_env`` adds variables to some processes by name (a worker on another "host").
    """
    specs = stack_specs(settings)
    for spec in specs:
        spec.env.update((process_env or {}).get(spec.name, {}))
    supervisor = Supervisor(specs, settings, log_dir=log_dir, cwd=ROOT, env=env)
    supervisor.start_all()
    for child in supervisor.children.values():
        child.wait_ready()
    return supervisor


@contextmanager
def running_stack(
    backend: str,
    values: dict[str, Any],
    tmp: Path,
    process_env: dict[str, dict[str, str]] | None = None,
) -> Iterator[Stack]:
    """Migrate, run the stack's processes under a supervisor, and stop them all afterwards."""
    values = dict(values)
    values.setdefault("api_host", "127.0.0.1")
    values.setdefault("api_port", free_port())
    values.setdefault("generate_threads", 8)
    values.setdefault("metrics_dir", tmp / "metrics")  # each stack its own metric files
    settings = Settings(**values)
    migrate.upgrade(settings)
    env = settings_env(values)
    services = build_services(settings)
    supervisor = start_stack(settings, env, tmp, process_env)
    stop = threading.Event()
    thread = supervisor.run_in_thread(stop)
    api = tenant_api(services, f"http://{settings.api_host}:{settings.api_port}", "tenant-a")
    try:
        api.wait_ready()
        yield Stack(backend, settings, env, services, supervisor, api, tmp)
    finally:
        stop.set()
        thread.join(60)
        services.close()


@contextmanager
def private_stack(
    tmp: Path,
    name: str,
    process_env: dict[str, dict[str, str]] | None = None,
    **settings: Any,
) -> Iterator[Stack]:
    """Run a stack on a Redis server and a PostgreSQL database of its own, files in ``tmp``.

    For a module whose stack would disturb the shared one (a load, a restart, other settings).
    """
    need("PostgreSQL", _check_postgres())
    need("a private Redis server", missing_servers())
    redis_server = PrivateRedis().start()
    values = stack_values(TEST_SETTINGS, tmp, redis_server, scratch_database(name), **settings)
    try:
        with running_stack(name, values, tmp, process_env) as stack:
            yield stack
    finally:
        redis_server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-protocol server (moto's, a process) for the session; each user makes a bucket."""
    need("moto's S3 server (the moto[server] extra)", missing_s3())
    server = S3Server()
    try:
        server.start()
    except Exception as exc:
        server.stop()
        need("moto's S3 server", exc)
    yield server
    server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Run migrations, then the API, the workers and the reconciler on one backend."""
    tmp = tmp_path_factory.mktemp(request.param)
    values = backend_settings(request.param, tmp)
    with running_stack(request.param, values, tmp, TRAIN_LEASE) as running:
        yield running


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The docker-compose file, parsed."""
    return yaml.safe_load(COMPOSE_PATH.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    """The docker-compose file's services."""
    return compose["services"]
