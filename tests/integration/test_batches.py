"""Bulk batches through the real stack: validation, chunked delivery, streamed results, cancel."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select

from shared.jobs.status import BATCH_TERMINAL
from shared.tables import Batch, Job
from tests.conftest import Stack
from tests.support import wait_for

pytestmark = pytest.mark.integration


def _rows(stack: Stack) -> tuple[int, int]:
    with stack.services.store.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Job)),
            session.scalar(select(func.count()).select_from(Batch)),
        )


def _items(n: int, seconds: float = 0.0) -> list[dict]:
    return [{"custom_id": f"item-{i}", "params": {"seconds": seconds}} for i in range(n)]


def _wait_batch(stack: Stack, batch_id: str, timeout_s: float = 120) -> dict:
    def done() -> dict | None:
        batch = stack.api.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["status"] in BATCH_TERMINAL else None

    return wait_for(done, timeout_s, 0.2, f"batch {batch_id}")


def test_a_batch_runs_and_streams_results_in_submit_order(stack: Stack) -> None:
    resp = stack.api.post("/v1/batches", json={"type": "test.sleep", "items": _items(300)})
    assert resp.status_code == 202, resp.text
    batch = resp.json()
    assert batch["total"] == 300 and batch["status"] == "in_progress"
    assert resp.headers["Location"].endswith(batch["id"])
    done = _wait_batch(stack, batch["id"])
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 300
    assert done["progress"] == 1.0 and done["finished_at"]
    with stack.api.get(f"/v1/batches/{batch['id']}/results", stream=True) as results:
        assert results.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in results.iter_lines() if line]
    assert [x["custom_id"] for x in lines] == [f"item-{i}" for i in range(300)]
    assert all(x["status"] == "succeeded" and x["result"]["slept"] == 0 for x in lines)


def test_a_jsonl_upload_is_accepted(stack: Stack) -> None:
    body = "\n".join(json.dumps(item) for item in _items(50)) + "\n"
    resp = stack.api.post(
        "/v1/batches",
        data={"type": "test.sleep"},
        files={"file": ("items.jsonl", io.BytesIO(body.encode()))},
    )
    assert resp.status_code == 202, resp.text
    assert _wait_batch(stack, resp.json()["id"])["counts"]["succeeded"] == 50


@pytest.mark.parametrize(
    "mutate, field",
    [
        (
            lambda items: items.__setitem__(7, {"custom_id": "item-3", "params": {}}),
            "items[7].custom_id",
        ),
        (lambda items: items[5]["params"].__setitem__("seconds", -1), "items[5].params.seconds"),
        (lambda items: items[9]["params"].__setitem__("bogus", 1), "items[9].params.bogus"),
        (lambda items: items[2].pop("custom_id"), "items[2].custom_id"),
    ],
)
def test_one_bad_item_rejects_the_whole_batch(stack: Stack, mutate, field: str) -> None:
    before = _rows(stack)
    items = _items(20)
    mutate(items)
    resp = stack.api.post("/v1/batches", json={"type": "test.sleep", "items": items})
    assert resp.status_code == 422, resp.text
    assert field in [e["field"] for e in resp.json()["errors"]]
    assert _rows(stack) == before


def test_batches_take_generation_types_only(stack: Stack) -> None:
    resp = stack.api.post("/v1/batches", json={"type": "test.train_sleep", "items": _items(2)})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "type"


def test_cancel_a_batch(stack: Stack) -> None:
    resp = stack.api.post(
        "/v1/batches", json={"type": "test.sleep", "items": _items(400, seconds=0.5)}
    )
    batch_id = resp.json()["id"]
    wait_for(
        lambda: stack.api.get(f"/v1/batches/{batch_id}").json()["counts"]["running"],
        60,
        what="the batch to start",
    )
    cancel = stack.api.post(f"/v1/batches/{batch_id}/cancel")
    assert cancel.status_code == 202
    assert cancel.json()["status"] in ("cancelling", "canceled")
    done = _wait_batch(stack, batch_id, 120)
    assert done["status"] == "canceled"
    assert done["counts"]["canceled"] > 0
    assert done["counts"]["queued"] == done["counts"]["running"] == 0
    lines = stack.api.get(f"/v1/batches/{batch_id}/results").text.splitlines()
    assert len(lines) == 400


def test_unknown_batch_is_404(stack: Stack) -> None:
    for path in ("/v1/batches/nope", "/v1/batches/00000000-0000-0000-0000-000000000000/results"):
        assert stack.api.get(path).status_code == 404
