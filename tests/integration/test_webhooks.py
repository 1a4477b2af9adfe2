"""Webhooks through the real API, reconciler and a receiver process: signed, retried, SSRF-safe.

The receiver (``tests.fixtures.receiver``) logs every connection and request it gets, so the
SSRF table can prove that a refused URL was never connected to. Assertions are on counts and
order; the only timing compared is one gap against the next.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.launcher import free_port
from shared.db import utcnow
from shared.tables import WebhookDelivery
from shared.webhooks import WebhookVerificationError, verify
from tests.conftest import ROOT, Stack
from tests.support import Api, wait_for

pytestmark = pytest.mark.integration


class Receiver:
    """A receiver process and its log."""

    def __init__(self, host: str, log: Path) -> None:
        self.host, self.port, self.log = host, free_port(), log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fixtures.receiver", host, str(self.port), str(log)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def entries(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.entries() if "path" in e and path in (None, e["path"])]

    def connections(self) -> int:
        return sum("connection" in e for e in self.entries())


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    hook = Receiver("127.0.0.2", tmp_path / "receiver.jsonl")
    yield hook
    hook.proc.kill()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Receiver]:
    """Where every hostile URL points (127.0.0.1: not on the allowlist)."""
    trap = Receiver("127.0.0.1", tmp_path / "listener.jsonl")
    yield trap
    trap.proc.kill()


def _secret(api: Api) -> str:
    resp = api.post("/v1/webhooks/secret")
    assert resp.status_code == 201, resp.text
    return resp.json()["secret"]


def _deliveries(api: Api, job_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/v1/jobs/{job_id}/webhook-deliveries")
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def _submit(api: Api, url: str, events: list[str] | None = None, **params: Any) -> str:
    body = {"type": "test.sleep", "params": params, "webhook": url}
    if events:
        body["webhook_events_filter"] = events
    resp = api.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def test_deliveries_are_signed_and_verify(stack: Stack, receiver: Receiver) -> None:
    api = stack.client("hooked")
    missing = api.post(
        "/v1/jobs", json={"type": "test.sleep", "params": {}, "webhook": receiver.url("/ok")}
    )
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "webhook"
    secret = _secret(api)
    job_id = _submit(api, receiver.url("/ok"), ["start", "completed"], seconds=0.5)
    assert api.wait(job_id)["status"] == "succeeded"
    wait_for(lambda: len(receiver.requests()) >= 2, 30, what="two deliveries")
    events = [verify(secret, r["body"], r["headers"]) for r in receiver.requests()]
    assert [e["type"] for e in events] == ["job.start", "job.completed"]
    assert {e["data"]["id"] for e in events} == {job_id}
    assert events[1]["data"]["status"] == "succeeded"
    # The dispatcher records a delivery once the receiver has answered: a moment after it got it.
    expected = [("start", "delivered", 1), ("completed", "delivered", 1)]

    def recorded() -> list[dict[str, Any]] | None:
        found = _deliveries(api, job_id)
        seen = [(d["event"], d["status"], len(d["attempts"])) for d in found]
        return found if seen == expected else None

    deliveries = wait_for(recorded, 30, what="both deliveries recorded")
    assert deliveries[0]["attempts"][0]["status_code"] == 200
    first = receiver.requests()[0]
    with pytest.raises(WebhookVerificationError):  # a body changed on the way
        verify(secret, first["body"].replace("succeeded", "failed") + " ", first["headers"])
    with pytest.raises(WebhookVerificationError):  # another tenant's secret, or a rotated one
        verify(_secret(api), first["body"], first["headers"])


def test_a_batch_tells_its_start_progress_and_end(stack: Stack, receiver: Receiver) -> None:
    api = stack.client("hooked-batch")
    secret = _secret(api)
    # Items end one by one over seconds: a batch that runs and ends between two dispatcher
    # passes is told only ``completed`` (changes coalesce), as a loaded machine made of 1.2 s.
    items = [{"custom_id": str(i), "params": {"seconds": 1 + i / 2}} for i in range(6)]
    body = {
        "type": "test.sleep",
        "items": items,
        "webhook": receiver.url("/batch"),
        "webhook_events_filter": ["start", "progress", "completed"],
    }
    resp = api.post("/v1/batches", json=body)
    assert resp.status_code == 202, resp.text

    def ended() -> list[dict[str, Any]] | None:
        events = [verify(secret, r["body"], r["headers"]) for r in receiver.requests("/batch")]
        return events if events and events[-1]["type"] == "batch.completed" else None

    events = wait_for(ended, 60, 0.2, "the batch's last event")
    types = [e["type"] for e in events]
    assert types[0] == "batch.start" and types.count("batch.completed") == 1, types
    assert set(types) <= {"batch.start", "batch.progress", "batch.completed"}
    assert events[-1]["data"]["counts"]["succeeded"] == 6
    done = [
        sum(e["data"]["counts"][s] for s in ("succeeded", "failed", "canceled")) for e in events
    ]
    assert done == sorted(done), done  # told in order, never backwards


def test_a_failing_receiver_is_retried_with_growing_gaps(stack: Stack, receiver: Receiver) -> None:
    api = stack.client("hooked-retry")
    secret = _secret(api)
    job_id = _submit(api, receiver.url("/fail/2"))
    assert api.wait(job_id)["status"] == "succeeded"

    def delivered() -> dict[str, Any] | None:
        found = _deliveries(api, job_id)
        return found[0] if found and found[0]["status"] == "delivered" else None

    delivery = wait_for(delivered, 60, 0.2, "the third attempt")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    tries = receiver.requests("/fail/2")
    assert len(tries) == 3
    assert len({t["headers"]["webhook-id"] for t in tries}) == 1  # one event, retried
    assert all(verify(secret, t["body"], t["headers"]) for t in tries)
    first_gap, second_gap = tries[1]["at"] - tries[0]["at"], tries[2]["at"] - tries[1]["at"]
    assert second_gap > first_gap, (first_gap, second_gap)


def test_a_silent_receiver_does_not_delay_the_job(stack: Stack, receiver: Receiver) -> None:
    api = stack.client("hooked-silent")
    _secret(api)
    job_id = _submit(api, receiver.url("/hang"), ["start", "completed"], seconds=0.3)
    assert api.wait(job_id, timeout_s=30)["status"] == "succeeded"
    wait_for(lambda: receiver.requests("/hang"), 30, what="the receiver to be called")
    deliveries = _deliveries(api, job_id)
    # The job ended while its receiver still had not answered a single delivery.
    assert all(d["status"] == "pending" for d in deliveries), deliveries
    assert not any(a["status_code"] == 200 for d in deliveries for a in d["attempts"])


HOSTILE = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:7f00:1]:{port}/",
    "http://[2002:7f00:1::]:{port}/",
    "http://0.0.0.0:{port}/",
    "http://[::]:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f000001:{port}/",
    "http://127.1:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://10.0.0.1/",
    "http://192.168.0.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://[fe80::1]/",
    "https://127.0.0.1:{port}/",
    "http://user:pw@127.0.0.2:{port}/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/",
    "ftp://127.0.0.1:{port}/",
    "http://no-such-host.invalid/",
]


def test_hostile_webhook_urls_never_connect(
    stack: Stack, receiver: Receiver, listener: Receiver
) -> None:
    api = stack.client("hooked-hostile")
    _secret(api)
    for template in HOSTILE:
        url = template.format(port=listener.port)
        resp = api.post("/v1/jobs", json={"type": "test.sleep", "params": {}, "webhook": url})
        assert resp.status_code == 422, (url, resp.text)
        assert resp.json()["errors"][0]["field"] == "webhook", url
    # An allowed receiver that redirects to the listener: the redirect is not followed.
    to = listener.url("/")
    redirected = _submit(api, receiver.url(f"/redirect?to={to}"))
    # A URL that passed at submit but is refused when it is sent (DNS changed, say).
    rebound = _submit(api, receiver.url("/ok"), seconds=0)
    api.wait(rebound)
    _rebind(stack, rebound, listener.url("/rebound"))

    def tried(job_id: str, status: str) -> dict[str, Any] | None:
        found = [d for d in _deliveries(api, job_id) if d["status"] == status]
        return found[0] if found else None

    wait_for(lambda: tried(redirected, "failed") or tried(redirected, "pending"), 30)
    wait_for(lambda: receiver.requests("/redirect"), 30, what="the redirecting receiver")
    refused = wait_for(lambda: tried(rebound, "failed"), 30, what="the refused delivery")
    assert "not a public address" in refused["attempts"][0]["error"]
    (answer,) = [a for d in _deliveries(api, redirected) for a in d["attempts"]][:1]
    assert answer["status_code"] == 302
    assert listener.connections() == 0, listener.entries()


def _rebind(stack: Stack, job_id: str, url: str) -> None:
    """Queue a delivery to ``url`` as if the job's host had come to resolve there."""
    job = stack.services.store.get(uuid.UUID(job_id))
    assert job is not None
    with stack.services.store.sessions() as session:
        session.add(
            WebhookDelivery(
                id=uuid.uuid4(),
                tenant_id=job.tenant_id,
                job_id=job.id,
                event="completed",
                url=url,
                payload={"type": "job.completed", "data": {"id": job_id}},
                status="pending",
                attempts=[],
                next_attempt_at=utcnow(),
                created_at=utcnow(),
            )
        )
        session.commit()
