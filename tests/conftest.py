"""Fixtures: real PostgreSQL, Redis, a real Celery worker process and the API under gunicorn.

A missing service fails the run under CI=true and skips the test elsewhere, with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text

from shared import migrate
from shared.config import Settings
from shared.delivery.reconciler import start_thread
from shared.services import Services, build_services
from tests.support import (
    CI,
    PG_URL,
    REDIS_HOST,
    REDIS_PORT,
    Api,
    Process,
    api_process,
    free_port,
    settings_env,
    worker_process,
)

BACKENDS = ["postgres", "embedded"]
TEST_SETTINGS: dict[str, Any] = {
    "lease_s": 2.0,
    "heartbeat_s": 0.5,
    "republish_after_s": 3.0,
    "reconcile_interval_s": 0.5,
    "broker_poll_interval_s": 0.05,
    # Keep worker restarts cheap: the platform tests never need Keras in the worker.
    "warmup_imports": False,
    "max_attempts": 3,
    "plugins": ["tests.fixtures.jobtypes"],
}


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
        for db in (14, 15):
            redis.Redis(REDIS_HOST, REDIS_PORT, db=db).flushdb()
        values.update(
            database_url=PG_URL,
            broker_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/14",
            redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/15",
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
    worker: Process
    api_server: Process
    api: Api
    tmp: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def effects(self, job_id: str, name: str) -> list[str]:
        """Return the lines a test job wrote to one of its effect files."""
        path = self.settings.artifact_dir / "effects" / f"{job_id}.{name}"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="session", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Start migrations, a worker, the API and a reconciler on one backend."""
    tmp = tmp_path_factory.mktemp(request.param)
    values = backend_settings(request.param, tmp)
    settings = Settings(**values)
    migrate.upgrade(settings)
    env = settings_env(values)
    services = build_services(settings)
    port = free_port()
    worker = worker_process(env, tmp).start()
    api_server = api_process(env, tmp, port).start()
    api = Api(f"http://127.0.0.1:{port}")
    api.wait_ready()
    stop = threading.Event()
    reconciler = start_thread(
        services.store,
        services.publisher,
        stop=stop,
        interval_s=settings.reconcile_interval_s,
        republish_after_s=settings.republish_after_s,
    )
    yield Stack(request.param, settings, env, services, worker, api_server, api, tmp)
    stop.set()
    reconciler.join(5)
    worker.stop()
    api_server.stop()
    services.close()
