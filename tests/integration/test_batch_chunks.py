"""A batch's chunk is its unit of claim, retry and commit: crashes, poison items and cancel.

Every item's result appears once, in submit order, whatever happened to the chunks that carried
it: a worker killed mid-chunk, a pass that raises on one poison item (the chunk is split down to
that item), or a cancel while the batch runs.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest
from sqlalchemy import func, select

from bench.batch_rows import JsonlBody
from bench.cpu import Peak, tree_rss_mb
from shared.db import utcnow
from shared.jobs.status import BATCH_TERMINAL
from shared.tables import Artifact, Job
from tests.conftest import Stack
from tests.support import wait_for

pytestmark = pytest.mark.integration


def _submit(stack: Stack, type_: str, params: list[dict]) -> str:
    items = [{"custom_id": f"c{i}", "params": p} for i, p in enumerate(params)]
    resp = stack.api.post("/v1/batches", json={"type": type_, "items": items}, timeout=120)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def _wait(stack: Stack, batch_id: str, timeout_s: float = 180) -> dict:
    def ended() -> dict | None:
        batch = stack.api.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["status"] in BATCH_TERMINAL else None

    return wait_for(ended, timeout_s, 0.2, f"batch {batch_id}")


def _results(stack: Stack, batch_id: str) -> list[dict]:
    text = stack.api.get(f"/v1/batches/{batch_id}/results").text
    return [json.loads(line) for line in text.splitlines()]


def _chunks(stack: Stack, batch_id: str) -> list[Job]:
    with stack.services.store.sessions() as session:
        stmt = select(Job).where(Job.batch_id == uuid.UUID(batch_id)).order_by(Job.batch_index)
        return list(session.scalars(stmt))


def _running(stack: Stack, batch_id: str) -> bool:
    return any(c.status == "running" for c in _chunks(stack, batch_id))


def test_a_worker_killed_mid_chunk_loses_no_item_and_commits_each_once(stack: Stack) -> None:
    params = [{"seconds": 0.05, "record": True} for _ in range(300)]
    batch_id = _submit(stack, "test.sleep", params)
    wait_for(lambda: _running(stack, batch_id), 60, 0.05, "a chunk to run")
    stack.worker.kill()  # parent and child, mid-chunk: their leases expire, the chunks rerun
    stack.worker.start()
    done = _wait(stack, batch_id)
    assert done["counts"]["succeeded"] == 300, done
    lines = _results(stack, batch_id)
    assert [x["custom_id"] for x in lines] == [f"c{i}" for i in range(300)]
    assert {x["status"] for x in lines} == {"succeeded"}
    ids = [c.id for c in _chunks(stack, batch_id)]
    with stack.services.store.sessions() as session:
        effects = session.scalar(
            select(func.count()).select_from(Artifact).where(Artifact.job_id.in_(ids))
        )
    assert effects == 300  # one per item: a killed attempt's rows went with its rerun's commit


def test_a_poison_item_among_1000_fails_alone_and_the_rest_succeed_once(stack: Stack) -> None:
    params = [{"poison": i == 617} for i in range(1000)]
    done = _wait(stack, _submit(stack, "test.poison", params))
    assert done["status"] == "completed"
    assert (done["counts"]["succeeded"], done["counts"]["failed"]) == (999, 1), done
    lines = _results(stack, done["id"])
    # In submit order across the split chunks, each item once.
    assert [x["custom_id"] for x in lines] == [f"c{i}" for i in range(1000)]
    failed = [x for x in lines if x["status"] != "succeeded"]
    assert [x["custom_id"] for x in failed] == ["c617"]
    assert "a poison row broke the pass" in failed[0]["error"]["message"]
    chunks = _chunks(stack, done["id"])
    # The poison item's chunk was halved down to one item; every other chunk ran whole.
    size = stack.settings.batch_chunk_size
    assert len(chunks) == 1000 // size + 1 + (size - 1).bit_length(), [c.item_count for c in chunks]
    poisoned = [c for c in chunks if c.status == "failed"]
    assert [(c.batch_index, c.item_count) for c in poisoned] == [(617, 1)]


def test_no_item_starts_after_the_cancel_is_committed(stack: Stack) -> None:
    batch_id = _submit(stack, "test.poison", [{"seconds": 0.3} for _ in range(2000)])
    wait_for(lambda: _running(stack, batch_id), 60, 0.05, "a chunk to run")
    cancel = stack.api.post(f"/v1/batches/{batch_id}/cancel")
    canceled_at: datetime = utcnow()  # after the commit: the API answered
    assert cancel.status_code == 202
    done = _wait(stack, batch_id)
    assert done["status"] == "canceled" and done["counts"]["canceled"] > 1000, done
    assert done["counts"]["succeeded"] + done["counts"]["canceled"] == 2000, done
    started = [c.started_at for c in _chunks(stack, batch_id) if c.started_at is not None]
    assert started and not [t for t in started if t > canceled_at]
    lines = _results(stack, batch_id)
    assert [x["custom_id"] for x in lines] == [f"c{i}" for i in range(2000)]


def test_a_200_mb_jsonl_body_streams_into_chunks_in_bounded_memory(stack: Stack) -> None:
    body = JsonlBody(3_500, 60_000)  # 200 MiB
    api_root = stack.api_server.child.pid
    with Peak(api_root, tree_rss_mb, every_s=0.05) as rss:
        resp = stack.api.post(
            "/v1/batches?type=test.echo",
            data=body,
            headers={"Content-Type": "application/x-ndjson"},
            timeout=300,
        )
    assert resp.status_code == 202, resp.text
    batch_id = resp.json()["id"]
    stack.api.post(f"/v1/batches/{batch_id}/cancel")  # its items are not what is tested
    chunks = _chunks(stack, batch_id)
    size = stack.settings.batch_chunk_size
    assert [c.item_count for c in chunks] == [size] * (3_500 // size) + [3_500 % size]
    stored = sum(len(c.items) for c in chunks)
    assert stored >= 3_500 * 60_000 and body.size > 200 * 1024 * 1024
    # The API read it a line at a time and spooled its chunks to disk: its memory barely moved.
    assert rss.peak - rss.start < 64, (rss.start, rss.peak)
