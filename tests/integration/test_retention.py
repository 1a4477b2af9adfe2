"""Retention through the real API and CLI: an expired job keeps its status, its file is 410.

And every key the platform leaves in Redis (outside the broker's queues) expires on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
import redis as redis_lib
from sqlalchemy import select

from shared.tables import Artifact
from shared.tenants.accounts import update_tenant
from tests.conftest import Stack
from tests.support import wait_for

pytestmark = pytest.mark.integration

RETENTION_DAYS = 0.5 / 86_400  # half a second


def _gc(stack: Stack) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "gc"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_expired_job_keeps_its_status_and_its_files_answer_410(stack: Stack) -> None:
    api = stack.client("fleeting")
    update_tenant(stack.services.store.sessions, name="fleeting", retention_days=RETENTION_DAYS)
    job = api.wait(api.submit("test.sleep", {"seconds": 0, "record": True})["id"])
    assert job["status"] == "succeeded" and job["expired_at"] is None
    with stack.services.store.sessions() as session:
        artifact = session.scalar(
            select(Artifact.id).where(Artifact.job_id == uuid.UUID(job["id"]))
        )
    assert api.get(f"/v1/artifacts/{artifact}").status_code == 200
    items = [{"custom_id": str(i), "params": {"record": True}} for i in range(3)]
    batch = api.post("/v1/batches", json={"type": "test.sleep", "items": items}).json()
    wait_for(
        lambda: api.get(f"/v1/batches/{batch['id']}").json()["status"] == "completed",
        60,
        what="the batch",
    )
    time.sleep(1.0)  # past the retention
    # The stack's reconciler sweeps too (every retention_sweep_s) and may come first: what is
    # checked is that they expired, once. (What a sweep counts is tested in-process.)
    _gc(stack)
    expired = api.job(job["id"])
    assert expired["status"] == "succeeded" and expired["finished_at"] == job["finished_at"]
    assert expired["result"] is None and expired["expired_at"] is not None
    gone = api.get(f"/v1/artifacts/{artifact}")
    assert gone.status_code == 410, gone.text
    assert gone.headers["Content-Type"] == "application/problem+json"
    assert gone.json()["code"] == "expired"
    results = api.get(f"/v1/batches/{batch['id']}/results")
    assert results.status_code == 410, results.text
    assert api.get(f"/v1/batches/{batch['id']}").json()["expired_at"] is not None
    assert _gc(stack)["jobs"] == 0  # nothing expires twice


def test_every_key_outside_the_broker_expires(stack: Stack) -> None:
    if stack.backend != "postgres":
        pytest.skip("the embedded defaults keep nothing in Redis")
    job = stack.api.wait(stack.api.submit("test.stream", {"chunks": 3, "seconds": 0})["id"])
    assert job["status"] == "succeeded"
    items = [{"custom_id": str(i), "params": {}} for i in range(5)]
    batch = stack.api.post("/v1/batches", json={"type": "test.sleep", "items": items}).json()
    wait_for(
        lambda: stack.api.get(f"/v1/batches/{batch['id']}").json()["status"] == "completed",
        60,
        what="the batch",
    )
    client = redis_lib.Redis.from_url(stack.settings.redis_url)
    keys = list(client.scan_iter(count=1000))
    assert keys, "the status cache holds nothing: the test would prove nothing"
    forever = [k for k in keys if client.ttl(k) == -1]
    assert forever == [], forever
