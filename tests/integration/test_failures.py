"""What clients see when the database or the broker is down, and that no accepted job is lost."""

from __future__ import annotations

import uuid

import pytest

from api import create_app
from shared.config import Settings
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def test_unreachable_database_gets_503_with_retry_after(tmp_path) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        broker_url="filesystem://",
        broker_dir=tmp_path / "broker",
        artifact_dir=tmp_path / "artifacts",
    )
    client = create_app(settings).test_client()
    resp = client.post(
        "/v1/jobs",
        json={"type": "image.generate", "model": "m", "params": {}},
        headers={"Authorization": "Bearer aigc_checked-against-the-database"},
    )
    assert resp.status_code == 503
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert int(resp.headers["Retry-After"]) > 0
    assert "Traceback" not in resp.get_data(as_text=True)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["database"].startswith("error")


def test_a_failed_publish_still_accepts_and_the_reconciler_delivers(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    broken = stack.settings.model_copy(
        update={"broker_url": "redis://127.0.0.1:1/0", "publish_timeout_s": 0.5}
    )
    client = create_app(broken).test_client()
    resp = client.post(
        "/v1/jobs", json={"type": "test.sleep", "params": {"seconds": 0}}, headers=stack.api.auth
    )
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job_id = resp.json["id"]
    row = stack.services.store.get(uuid.UUID(job_id))
    assert row is not None
    assert "publish failed" in caplog.text
    assert client.get("/readyz").status_code == 503
    done = stack.api.wait(job_id, timeout_s=30)
    assert done["status"] == "succeeded"
