"""The job lifecycle over HTTP against a real API server, worker, database and broker."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from shared.delivery.lanes import all_queues
from shared.tables import Job
from tests.conftest import Stack
from tests.support import wait_for

pytestmark = pytest.mark.integration


def test_job_runs_to_success_over_http(stack: Stack) -> None:
    resp = stack.api.post(
        "/v1/jobs", json={"type": "test.sleep", "params": {"seconds": 0.3, "steps": 3}}
    )
    assert resp.status_code == 202
    job = resp.json()
    assert resp.headers["Location"].endswith(f"/v1/jobs/{job['id']}")
    assert job["status"] == "queued"
    done = stack.api.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["slept"] == 0.3
    assert done["progress"]["steps"] == 3
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"]
    assert len(stack.effects(job["id"], "done")) == 1


def test_failures_are_recorded_with_a_code(stack: Stack) -> None:
    failed = stack.api.wait(stack.api.submit("test.fail")["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "invalid_input", "message": "this job always fails"}
    crashed = stack.api.wait(stack.api.submit("test.boom")["id"])
    assert crashed["error"]["code"] == "internal_error"
    assert "Traceback" not in crashed["error"]["message"]


def test_retryable_error_runs_again(stack: Stack) -> None:
    job = stack.api.wait(stack.api.submit("test.flaky")["id"])
    assert job["status"] == "succeeded"
    assert job["attempts"] == 2


def _counts(stack: Stack) -> tuple[int, int]:
    with stack.services.store.sessions() as session:
        rows = session.scalar(select(func.count()).select_from(Job))
    if stack.backend == "postgres":
        broker = redis_lib.Redis.from_url(stack.settings.broker_url)
        messages = sum(broker.llen(q) for q in all_queues())
    else:
        messages = len(list((stack.settings.broker_dir / "queue").glob("*.msg")))
    return rows, messages


@pytest.mark.parametrize(
    "body, field",
    [
        ({"type": "no.such.type", "params": {}}, "type"),
        ({"type": "test.sleep", "params": {"seconds": -1}}, "params.seconds"),
        ({"type": "test.sleep", "params": {"nope": 1}}, "params.nope"),
        ({"type": "test.sleep", "params": {}, "extra": 1}, "extra"),
        (
            {"type": "text.generate", "model": "m", "params": {"prompt": "x", "max_tokens": 0}},
            "params.max_tokens",
        ),
        (
            {"type": "text.generate", "model": "m", "params": {"prompt": "x", "temperature": 9}},
            "params.temperature",
        ),
        ({"type": "image.generate", "model": "m", "params": {"n": 65}}, "params.n"),
        ({"type": "text.generate", "params": {"prompt": "x"}}, "model"),
        # Too big to train within max_train_memory_mb: refused before it is accepted.
        (
            {"type": "text.train", "model": "m", "params": {"units": 4096, "batch_size": 1024}},
            "params",
        ),
    ],
)
def test_invalid_requests_store_and_send_nothing(stack: Stack, body: dict, field: str) -> None:
    wait_for(lambda: _counts(stack)[1] == 0, 30, what="the queue to drain")
    before = _counts(stack)
    resp = stack.api.post("/v1/jobs", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    problem = resp.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]], problem
    assert _counts(stack) == before


def test_a_prompt_without_tokens_for_the_models_tokenizer_is_rejected(stack: Stack) -> None:
    # The API checks a prompt with the tokenizer saved with the model's version: a version
    # registered with a word tokenizer is enough, no Keras model is trained or loaded.
    name = f"words-{uuid.uuid4().hex[:8]}"
    registered = stack.api.submit("test.register", {"tokenizer": "word"}, model=name)
    assert stack.api.wait(registered["id"], 60)["status"] == "succeeded"
    blank = {"type": "text.generate", "model": name, "params": {"prompt": " \n\t "}}
    wait_for(lambda: _counts(stack)[1] == 0, 30, what="the queue to drain")
    before = _counts(stack)
    resp = stack.api.post("/v1/jobs", json=blank)
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["field"] == "params.prompt"
    assert _counts(stack) == before


def test_malformed_and_oversized_bodies(stack: Stack) -> None:
    resp = stack.api.post(
        "/v1/jobs", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body"
    big = json.dumps({"type": "test.sleep", "params": {"pad": "x" * (1024 * 1024 + 10)}})
    resp = stack.api.post("/v1/jobs", data=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.headers["Content-Type"] == "application/problem+json"


def test_unknown_and_malformed_ids_are_404(stack: Stack) -> None:
    for path in (
        f"/v1/jobs/{uuid.uuid4()}",
        "/v1/jobs/not-a-uuid",
        "/v1/jobs/..%2f..%2fetc",
        f"/v1/artifacts/{uuid.uuid4()}",
        "/v1/artifacts/..%2fsecret",
    ):
        resp = stack.api.get(path)
        assert resp.status_code == 404, path
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert "Traceback" not in resp.text


def test_cancel_a_running_job(stack: Stack) -> None:
    job = stack.api.submit("test.sleep", {"seconds": 20, "steps": 200})
    stack.api.wait(job["id"], statuses={"running"})
    resp = stack.api.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 202 and resp.json()["cancel_requested"] is True
    done = stack.api.wait(job["id"], timeout_s=15)
    assert done["status"] == "canceled"
    assert stack.effects(job["id"], "done") == []
    assert stack.api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409


def test_cancel_a_queued_job(stack: Stack) -> None:
    stack.worker.stop()
    try:
        job = stack.api.submit("test.sleep", {"seconds": 0})
        resp = stack.api.post(f"/v1/jobs/{job['id']}/cancel")
        assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    finally:
        stack.worker.start()
    # The worker gets the canceled job's message when it starts again and must skip it.
    wait_for(lambda: _counts(stack)[1] == 0, 30, what="the queue to drain")
    assert stack.api.job(job["id"])["status"] == "canceled"
    assert stack.effects(job["id"], "start") == []


def test_cancel_a_finished_job_conflicts(stack: Stack) -> None:
    job = stack.api.wait(stack.api.submit("test.sleep", {"seconds": 0})["id"])
    resp = stack.api.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 409
    assert resp.json()["status"] == 409


def test_list_filters_and_validates(stack: Stack) -> None:
    job = stack.api.wait(stack.api.submit("test.fail")["id"])
    page = stack.api.get("/v1/jobs", params={"status": "failed", "type": "test.fail"}).json()
    assert job["id"] in [j["id"] for j in page["data"]]
    assert all(j["status"] == "failed" and j["type"] == "test.fail" for j in page["data"])
    for bad in ({"limit": 0}, {"limit": 101}, {"status": "nope"}, {"cursor": "!!"}):
        resp = stack.api.get("/v1/jobs", params=bad)
        assert resp.status_code == 422, bad


def test_pagination_has_no_duplicates_or_gaps_under_inserts(stack: Stack) -> None:
    api = stack.client("paged")  # a tenant of its own: the pages hold this test's jobs only
    existing = {api.submit("test.sleep", {"seconds": 0})["id"] for _ in range(25)}
    stop = threading.Event()

    def insert_more() -> None:
        while not stop.is_set():
            api.submit("test.sleep", {"seconds": 0})

    writer = threading.Thread(target=insert_more)
    writer.start()
    seen: list[str] = []
    cursor = None
    try:
        while True:
            params = {"limit": 7, "type": "test.sleep", **({"cursor": cursor} if cursor else {})}
            page = api.get("/v1/jobs", params=params).json()
            seen += [j["id"] for j in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert existing <= set(seen), "a job that existed before paging was skipped"


def test_openapi_and_health(stack: Stack) -> None:
    spec = stack.api.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/jobs" in spec["paths"] and "JobCreate" in spec["components"]["schemas"]
    assert stack.api.get("/healthz").status_code == 200
    ready = stack.api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)  # the cache needs AIGC_REDIS_URL
def test_status_snapshots_are_cached_in_redis(stack: Stack) -> None:
    cache = redis_lib.Redis.from_url(stack.settings.redis_url)
    job = stack.api.wait(stack.api.submit("test.sleep", {"seconds": 0})["id"])
    snapshot = json.loads(cache.hget(f"aigc:job:{job['id']}", "d"))
    assert snapshot["status"] == "succeeded"
    assert 0 < cache.ttl(f"aigc:job:{job['id']}") <= stack.settings.status_cache_ttl_s
    cache.delete(f"aigc:job:{job['id']}")
    assert stack.api.job(job["id"])["status"] == "succeeded"  # falls back to the database


def test_long_poll_answers_when_the_job_ends(stack: Stack) -> None:
    job = stack.api.submit("test.sleep", {"seconds": 1.0, "steps": 4})
    started = time.monotonic()
    resp = stack.api.get(f"/v1/jobs/{job['id']}", params={"wait_s": 20})
    waited = time.monotonic() - started
    assert resp.status_code == 200 and resp.json()["status"] == "succeeded"
    assert waited < 15, "the long poll did not return when the job ended"
    running = stack.api.submit("test.sleep", {"seconds": 5, "steps": 50})
    early = stack.api.get(f"/v1/jobs/{running['id']}", params={"wait_s": 0.5}).json()
    assert early["status"] in ("queued", "running")
    assert stack.api.get(f"/v1/jobs/{job['id']}", params={"wait_s": 61}).status_code == 422
    stack.api.post(f"/v1/jobs/{running['id']}/cancel")
