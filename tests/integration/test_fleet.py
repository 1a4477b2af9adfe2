"""``GET /v1/fleet`` through the real stack, on PostgreSQL + Redis and on the embedded defaults."""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any

import pytest

from shared.delivery.lanes import all_lanes
from shared.tenants.keys import ADMIN
from tests.conftest import Stack
from tests.support import wait_for

pytestmark = pytest.mark.integration

SHAPE = {
    "workers": {
        "name": str,
        "queues": list,
        "pid": int,
        "running": int,
        "last_seen": str,
        "duty_cycle": dict,
    },
    "lanes": {"name": str, "broker_messages": int, "waiting_rows": int},
    "tenants": {"tenant": str, "waiting_rows": int, "running": int},
}
PER_PASS = ("rows_per_pass", "wait_s_per_pass", "compute_s_per_pass")


def assert_shape(fleet: dict[str, Any]) -> None:
    """Fail unless the answer has exactly the console's shape, each field of its type."""
    assert set(fleet) == {*SHAPE, "batching"}, fleet
    for part, fields in SHAPE.items():
        for entry in fleet[part]:
            assert set(entry) == set(fields), (part, entry)
            for field, kind in fields.items():
                nullable = field in ("pid", "broker_messages")
                assert isinstance(entry[field], kind) or (nullable and entry[field] is None), entry
    batching = fleet["batching"]
    assert set(batching) == {"passes", *PER_PASS}, batching
    assert isinstance(batching["passes"], int)
    for field in PER_PASS:
        assert batching[field] is None or isinstance(batching[field], int | float), batching
    for worker in fleet["workers"]:
        datetime.fromisoformat(worker["last_seen"])  # ISO 8601


def test_the_fleet_answers_admins_only_with_its_shape(stack: Stack) -> None:
    user = stack.client("fleet-user")
    refused = user.get("/v1/fleet")
    assert refused.status_code == 403, refused.text
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["scope"] == ADMIN
    admin = stack.client("fleet-admin", [ADMIN])
    job = user.submit("test.sleep", {"seconds": 30, "steps": 300})
    user.wait(job["id"], 60, statuses={"running"})
    try:
        host = socket.gethostname()

        def seen() -> dict[str, Any] | None:
            fleet = admin.get("/v1/fleet").json()
            workers = {w["name"]: w for w in fleet["workers"]}
            if f"train@{host}" in workers and workers.get(f"gen@{host}", {}).get("running"):
                return fleet
            return None

        fleet = wait_for(seen, 30, 0.2, "both workers in the fleet, one running the job")
    finally:
        user.post(f"/v1/jobs/{job['id']}/cancel")
    assert_shape(fleet)
    workers = {w["name"]: w for w in fleet["workers"]}
    generate = workers[f"gen@{host}"]
    assert generate["queues"] == ["interactive.redo", "interactive", "batch.redo", "batch"]
    assert generate["pid"] > 0
    assert [lane["name"] for lane in fleet["lanes"]] == all_lanes()
    tenants = {t["tenant"]: t for t in fleet["tenants"]}
    assert tenants["fleet-user"]["running"] == 1, tenants
