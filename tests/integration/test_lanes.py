"""Lanes and the pacer through the real stack: a bulk batch never holds up interactive jobs.

Assertions are on order and counts: which job started before which, how many messages the
broker held, how many items ran after a cancel.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import select

from shared.db import utcnow
from shared.delivery.lanes import BATCH, redo
from shared.jobs.status import BATCH_TERMINAL
from shared.tables import Job
from tests.conftest import Stack
from tests.support import wait_for

pytestmark = pytest.mark.integration


def _batch(stack: Stack, n: int, seconds: float) -> str:
    items = [{"custom_id": str(i), "params": {"seconds": seconds}} for i in range(n)]
    resp = stack.api.post("/v1/batches", json={"type": "test.sleep", "items": items}, timeout=120)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def _wait_batch(stack: Stack, batch_id: str, timeout_s: float = 300) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        batch = stack.api.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["status"] in BATCH_TERMINAL else None

    return wait_for(ended, timeout_s, 0.2, f"batch {batch_id}")


def _broker_depth(stack: Stack) -> int:
    """Return how many messages wait in the batch lane and its redo queue."""
    queues = (BATCH, redo(BATCH))
    if stack.backend == "postgres":
        broker = redis_lib.Redis.from_url(stack.settings.broker_url)
        return sum(broker.llen(q) for q in queues)
    folder = stack.settings.broker_dir / "queue"
    return sum(1 for f in folder.glob("*.msg") if any(f".{q}." in f.name for q in queues))


def _started(stack: Stack, batch_id: str) -> list[datetime]:
    """Return when each started item of the batch started (its chunk's start)."""
    with stack.services.store.sessions() as session:
        rows = session.execute(
            select(Job.started_at, Job.item_count).where(
                Job.batch_id == uuid.UUID(batch_id), Job.started_at.is_not(None)
            )
        ).all()
    return [at for at, items in rows for _ in range(items)]


def test_an_interactive_job_goes_ahead_of_a_queued_batch(stack: Stack) -> None:
    batch_id = _batch(stack, 1500, 0.05)
    wait_for(lambda: len(_started(stack, batch_id)) >= 64, 60, what="the batch to start")
    job = stack.api.wait(stack.api.submit("test.sleep", {"seconds": 0})["id"], timeout_s=60)
    assert job["status"] == "succeeded"
    _wait_batch(stack, batch_id)
    started_at = datetime.fromisoformat(job["started_at"])
    after = [t for t in _started(stack, batch_id) if t > started_at]
    # It did not wait for the batch: most of the batch started after it.
    assert len(after) > 750, len(after)


def test_a_big_batch_keeps_few_messages_in_the_broker(stack: Stack) -> None:
    batch_id = _batch(stack, 3000, 0.0)
    depths: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            depths.append(_broker_depth(stack))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        final = _wait_batch(stack, batch_id)
    finally:
        done.set()
        sampler.join()
    assert final["status"] == "completed" and final["counts"]["succeeded"] == 3000
    assert (
        len(depths) > 10
        and max(depths) <= stack.settings.batch_window_items // stack.settings.batch_chunk_size
    ), max(depths)


def test_a_canceled_batch_leaves_nothing_to_run(stack: Stack) -> None:
    batch_id = _batch(stack, 2000, 0.05)
    wait_for(lambda: len(_started(stack, batch_id)) >= 64, 60, what="the batch to start")
    cancel = stack.api.post(f"/v1/batches/{batch_id}/cancel")
    canceled_at = utcnow()  # every process here shares this clock
    assert cancel.status_code == 202
    assert cancel.json()["counts"]["queued"] == 0  # the rows not yet released were canceled
    final = _wait_batch(stack, batch_id)
    assert final["status"] == "canceled" and final["counts"]["canceled"] > 1000, final
    # Chunks still in the broker find their items canceled: nothing started after the cancel.
    assert not [t for t in _started(stack, batch_id) if t > canceled_at]


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)  # pops a message off Redis
def test_a_lost_chunk_is_republished_while_its_lane_is_busy(stack: Stack) -> None:
    batch_id = _batch(stack, 1500, 0.02)
    broker = redis_lib.Redis.from_url(stack.settings.broker_url)
    # Queued behind the worker's own blocking pop: the next chunk the pacer sends is ours.
    lost = broker.brpop([BATCH], timeout=60)
    assert lost, "no chunk message to steal"
    final = _wait_batch(stack, batch_id)
    assert final["status"] == "completed" and final["counts"]["succeeded"] == 1500, final
