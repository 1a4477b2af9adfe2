"""Tenants through the real API and workers: keys, ownership (a BOLA matrix), caps, idempotency
and rate limits, on PostgreSQL + Redis and on the embedded defaults."""

from __future__ import annotations

import io
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.jobs.caps import FRESH_S
from shared.tables import ApiKey, Artifact, Batch, Dataset, IdempotentResponse, Job, Model, Tenant
from shared.tenants.accounts import update_tenant
from shared.tenants.keys import ADMIN, CACHE_TTL_S, JOBS_READ, hash_key
from tests.conftest import Stack
from tests.support import Api, wait_for

pytestmark = pytest.mark.integration

MISSING = "00000000-0000-4000-8000-000000000000"
STORED = (Job, Batch, Dataset, Artifact, Model, IdempotentResponse)


def _counts(stack: Stack) -> dict[str, int]:
    """Return the rows of every table a request could write to."""
    with stack.services.store.sessions() as session:
        return {
            t.__tablename__: session.scalar(select(func.count()).select_from(t)) for t in STORED
        }


def _a_resources(stack: Stack, a: Api) -> dict[str, str]:
    """Create one of each resource as tenant A; return their ids by the route's first segment."""
    job = a.wait(a.submit("test.sleep", {"seconds": 0})["id"], 60)
    trained = a.wait(a.submit("test.register", {}, model=f"own-{uuid.uuid4().hex[:8]}")["id"], 60)
    assert trained["status"] == "succeeded", trained
    name = trained["result"]["model"].split(":")[0]
    version = a.get(f"/v1/models/{name}").json()["versions"][0]
    batch = a.post("/v1/batches", json={"type": "test.sleep", "items": _items(1)})
    assert batch.status_code == 202, batch.text
    return {
        "jobs": job["id"],
        "batches": batch.json()["id"],
        "artifacts": version["artifact_url"].rsplit("/", 1)[1],
        "models": name,
    }


def _items(n: int) -> list[dict[str, Any]]:
    return [{"custom_id": str(i), "params": {}} for i in range(n)]


def _id_routes(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    spec = stack.api.get("/openapi.json").json()
    return [
        (method, path, op)
        for path, ops in spec["paths"].items()
        if "{" in path
        for method, op in ops.items()
    ]


def test_another_tenants_resources_answer_as_missing_ones(stack: Stack) -> None:
    """The BOLA matrix: every id-taking route of the OpenAPI document, for each resource of A."""
    a, b = stack.client("bola-a"), stack.client("bola-b")
    ids = _a_resources(stack, a)
    before = _counts(stack)
    covered = []
    for method, path, op in _id_routes(stack):
        resource = path.split("/")[2]
        assert resource in ids, f"the BOLA matrix does not cover {method.upper()} {path}"
        if op.get("x-required-scope") == ADMIN:
            # Only an admin may call it at all: a tenant's key is refused before any lookup.
            assert getattr(b, method)(_url(path, ids[resource]), json={}).status_code == 403
            continue
        absent = MISSING if "{id}" in path else "no-such-model"
        theirs = getattr(b, method)(_url(path, ids[resource]))
        missing = getattr(b, method)(_url(path, absent))
        assert theirs.status_code == missing.status_code == 404, (method, path, theirs.text)
        assert theirs.headers["Content-Type"] == "application/problem+json"
        # The same answer, but for the name a model's answer echoes back.
        assert theirs.text.replace(ids[resource], absent) == missing.text, (theirs.text, path)
        if method == "get":
            assert a.get(_url(path, ids[resource])).status_code == 200, (path, "A lost access")
        covered.append((method, path))
    assert len(covered) >= 7, covered
    assert _counts(stack) == before, "a refused request stored something"
    assert a.job(ids["jobs"])["status"] == "succeeded"  # B's cancel did nothing
    assert a.get(f"/v1/batches/{ids['batches']}").json()["status"] != "canceled"
    # Lists show a tenant its own resources only.
    assert ids["jobs"] not in {j["id"] for j in b.get("/v1/jobs").json()["data"]}
    assert ids["jobs"] in {j["id"] for j in a.get("/v1/jobs", params={"limit": 100}).json()["data"]}
    assert ids["models"] not in {m["name"] for m in b.get("/v1/models").json()["data"]}
    upload = a.post("/v1/datasets", files={"file": ("a.txt", io.BytesIO(b"A's words " * 50))})
    assert upload.status_code == 201, upload.text
    assert upload.json()["id"] not in {d["id"] for d in b.get("/v1/datasets").json()["data"]}
    # Nor can B train on A's dataset: it does not exist for B.
    train = b.submit("text.train", {"dataset_id": upload.json()["id"]}, model="b-model", expect=422)
    assert train["errors"][0]["field"] == "params.dataset_id"


def _url(path: str, value: str) -> str:
    return path.replace("{id}", value).replace("{name}", value)


def test_missing_wrong_revoked_and_underscoped_keys_store_nothing(stack: Stack) -> None:
    reader = stack.client("keys-tenant", [JOBS_READ])
    writer = stack.client("keys-tenant")
    before = _counts(stack)
    job = {"type": "test.sleep", "params": {}}
    batch = {"type": "test.sleep", "items": _items(1)}
    url = stack.api.base_url
    for headers in ({}, {"Authorization": "Bearer aigc_not-a-key"}, {"Authorization": "Basic x"}):
        for path, body in (("/v1/jobs", job), ("/v1/batches", batch)):
            resp = Api(url).post(path, json=body, headers=headers)
            assert resp.status_code == 401, resp.text
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert resp.headers["Content-Type"] == "application/problem+json"
    for path, body in (("/v1/jobs", job), ("/v1/batches", batch)):
        resp = reader.post(path, json=body)
        assert resp.status_code == 403 and resp.json()["scope"] == "jobs:write", resp.text
    upload = reader.post("/v1/datasets", files={"file": ("a.txt", io.BytesIO(b"words " * 50))})
    assert upload.status_code == 403
    assert reader.get("/v1/jobs").status_code == 200
    assert _counts(stack) == before, "a refused request stored something"
    # A revoked key stops working: as soon as Redis carries the news, else once the API
    # processes' cached verifications expire.
    assert writer.post("/v1/jobs", json=job).status_code == 202
    with stack.services.store.sessions() as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.hash == hash_key(writer.key)))
    stack.services.keys.revoke(key_id)
    wait_for(lambda: writer.get("/v1/jobs").status_code == 401, CACHE_TTL_S + 10, 0.2, "revoked")
    after = _counts(stack)
    assert writer.post("/v1/jobs", json=job).status_code == 401
    assert _counts(stack) == after


def test_idempotency_key_replays_and_creates_once(stack: Stack) -> None:
    a = stack.client("idem")
    body = {"type": "test.sleep", "params": {"seconds": 0}}
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = a.post("/v1/jobs", json=body, headers=key)
    again = a.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    assert first.headers["Location"] == again.headers["Location"]
    other = a.post("/v1/jobs", json={**body, "params": {"seconds": 1}}, headers=key)
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    # Another tenant's key space is its own.
    assert (
        stack.client("idem-other").post("/v1/jobs", json=body, headers=key).json()["id"]
        != (first.json()["id"])
    )
    # Concurrent requests with one key create one job (and one batch).
    for path, payload in (
        ("/v1/jobs", body),
        ("/v1/batches", {"type": "test.sleep", "items": _items(3)}),
    ):
        answers = _race(a, path, payload, {"Idempotency-Key": f"race-{uuid.uuid4()}"})
        assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
        assert len({r.json()["id"] for r in answers}) == 1
    with stack.services.store.sessions() as session:
        tenant = session.scalar(select(Tenant.id).where(Tenant.name == "idem"))
        jobs = session.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == tenant))
        batches = session.scalar(
            select(func.count()).select_from(Batch).where(Batch.tenant_id == tenant)
        )
    assert (jobs, batches) == (1 + 1 + 1, 1)  # the first job, the raced job, the batch's chunk


def _race(api: Api, path: str, payload: dict[str, Any], headers: dict[str, str]) -> list[Any]:
    """Send one request from 12 threads at once."""
    with ThreadPoolExecutor(12) as pool:
        return list(pool.map(lambda _: api.post(path, json=payload, headers=headers), range(12)))


def _outlive_cached_counts() -> None:
    """Let every API process's cached queued count expire, so that the next submit reads it.

    Not a wait for the system to do something: the cache's lifetime (``FRESH_S``) is fixed,
    and measured on this machine's monotonic clock, as this sleep is.
    """
    time.sleep(FRESH_S * 1.5)


def test_caps_answer_429_and_hold_running_jobs(stack: Stack) -> None:
    a = stack.client("capped")
    update_tenant(stack.services.store.sessions, name="capped", max_running=1, max_queued=3)
    long = a.submit("test.sleep", {"seconds": 30, "steps": 300})
    a.wait(long["id"], 30, statuses={"running"})
    # Each API process reads a tenant's queued count once a second, and counts its own accepts
    # in between: before and after the three, every process's count is let expire.
    _outlive_cached_counts()
    queued = [a.submit("test.sleep", {"seconds": 0})["id"] for _ in range(3)]
    _outlive_cached_counts()
    before = _counts(stack)
    over = a.post("/v1/jobs", json={"type": "test.sleep", "params": {}})
    assert over.status_code == 429, over.text
    assert int(over.headers["Retry-After"]) > 0
    assert over.headers["Content-Type"] == "application/problem+json"
    batch = a.post("/v1/batches", json={"type": "test.sleep", "items": _items(1)})
    assert batch.status_code == 429
    assert _counts(stack) == before
    # The running cap holds the three queued jobs back while the long one runs.
    for _ in range(10):
        assert [a.job(j)["status"] for j in queued] == ["queued"] * 3
    a.post(f"/v1/jobs/{long['id']}/cancel")
    for job_id in queued:
        assert a.wait(job_id, 60)["status"] == "succeeded"
    # Batch items are bounded by the pacer's window, not by the running cap: a tenant's
    # interactive jobs and its own bulk never hold each other up.
    long = a.submit("test.sleep", {"seconds": 30, "steps": 300})
    a.wait(long["id"], 30, statuses={"running"})
    _outlive_cached_counts()
    resp = a.post("/v1/batches", json={"type": "test.sleep", "items": _items(2)})
    assert resp.status_code == 202, resp.text
    wait_for(
        lambda: a.get(f"/v1/batches/{resp.json()['id']}").json()["status"] == "completed",
        60,
        what="the batch beside a running job at the cap",
    )
    assert a.job(long["id"])["status"] == "running"
    a.post(f"/v1/jobs/{long['id']}/cancel")
    assert stack.api.post("/v1/jobs", json={"type": "test.sleep", "params": {}}).status_code == 202


def test_rate_limit_answers_429_with_the_headers(stack: Stack) -> None:
    chatty = stack.client("chatty")
    update_tenant(stack.services.store.sessions, name="chatty", rate_limit="5/minute")
    answers = [chatty.get("/v1/jobs") for _ in range(12)]
    codes = [r.status_code for r in answers]
    assert set(codes) == {200, 429}, codes
    if stack.settings.redis_url:  # one count in Redis for all API processes
        assert codes == [200] * 5 + [429] * 7, codes
    else:  # in memory: each API process counts on its own
        assert 5 <= codes.count(200) <= 5 * stack.settings.api_workers, codes
    over = next(r for r in answers if r.status_code == 429)
    assert over.headers["Content-Type"] == "application/problem+json"
    assert over.json()["code"] == "rate_limited"
    # Within the minute's window, give or take the rounding up of a second on each side.
    assert 0 < int(over.headers["Retry-After"]) <= 62
    assert over.headers["RateLimit-Limit"] == "5"
    assert over.headers["RateLimit-Remaining"] == "0"
    assert over.headers["RateLimit-Reset"] == over.headers["Retry-After"]
    # Limits are per key: the suite's own client is not slowed by this tenant.
    assert stack.api.get("/v1/jobs").status_code == 200
    assert stack.api.get("/healthz").status_code == 200
