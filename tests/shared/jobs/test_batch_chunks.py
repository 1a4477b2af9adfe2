"""A batch stored as chunks: counts, results in submit order, and a dead chunk split in two."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from shared.errors import InputError
from shared.jobs import batches
from shared.jobs.batches import batch_status, stage, stream_results
from shared.jobs.lifecycle import Event, Expired, Raised
from shared.services import Services
from shared.tables import Batch, Job

pytestmark = pytest.mark.integration


def _store(svc: Services, n: int, chunk: int) -> Batch:
    settings = svc.settings.model_copy(update={"batch_chunk_size": chunk})
    batch = Batch(id=uuid.uuid4(), type="test.sleep", item_count=0)
    items = [{"custom_id": f"item-{i}", "params": {}} for i in range(n)]
    staged = stage(batch, items, settings=settings, check_model=None, max_items=n)
    svc.store.create_batch(batch, staged.rows(batch, settings))
    return batch


def _chunks(svc: Services, batch: Batch) -> list[Job]:
    with svc.store.sessions() as session:
        stmt = select(Job).where(Job.batch_id == batch.id).order_by(Job.batch_index)
        return list(session.scalars(stmt))


def _claim(svc: Services, chunk: Job) -> Job:
    (claimed,) = svc.store.claim(
        [chunk.id], "w:1:a", lease_s=30, time_limits={}, default_limit_s=600, running_cap=1
    )
    return claimed


def _lines(svc: Services, batch: Batch) -> list[dict]:
    return [
        json.loads(x)
        for blob in stream_results(svc.sessions, batch.id)
        for x in blob.split(b"\n")
        if x
    ]


def test_items_are_stored_a_chunk_per_row(svc: Services) -> None:
    batch = _store(svc, 25, chunk=4)
    rows = _chunks(svc, batch)
    assert [(r.batch_index, r.item_count) for r in rows] == [(i, 4) for i in range(0, 24, 4)] + [
        (24, 1)
    ]
    assert batch_status(svc.sessions, batch.id)["counts"]["queued"] == 25


def test_results_stream_in_submit_order_across_pages(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "RESULTS_PAGE", 2)  # 3 full pages of 2 chunks, then 1
    batch = _store(svc, 25, chunk=4)
    lines = _lines(svc, batch)
    assert [line["custom_id"] for line in lines] == [f"item-{i}" for i in range(25)]
    assert {line["status"] for line in lines} == {"queued"}


def test_a_repeated_custom_id_is_named_and_nothing_is_stored(svc: Services) -> None:
    batch = Batch(id=uuid.uuid4(), type="test.sleep", item_count=0)
    items = [{"custom_id": f"item-{i % 7 if i > 9 else i}", "params": {}} for i in range(12)]
    with pytest.raises(InputError) as caught:
        stage(batch, items, settings=svc.settings, check_model=None, max_items=100)
    assert caught.value.field == "items[10].custom_id"  # item-3 is item 3's id
    with pytest.raises(InputError) as caught:  # and the limit names the items
        stage(batch, items, settings=svc.settings, check_model=None, max_items=5)


def test_a_crashed_chunk_is_split_in_two_and_keeps_its_order(svc: Services) -> None:
    batch = _store(svc, 10, chunk=8)
    first = _claim(svc, _chunks(svc, batch)[0])
    row = svc.store.record(first, Raised(RuntimeError("poison")))
    assert row is not None and row.status == "queued" and row.item_count == 4
    rows = _chunks(svc, batch)
    assert [(r.batch_index, r.item_count, r.status) for r in rows] == [
        (0, 4, "queued"),
        (4, 4, "queued"),
        (8, 2, "queued"),
    ]
    assert rows[1].errors[0]["message"] == "RuntimeError: poison"  # each half keeps the history
    assert [x["custom_id"] for x in _lines(svc, batch)] == [f"item-{i}" for i in range(10)]
    assert batch_status(svc.sessions, batch.id)["counts"]["queued"] == 10


def _lose(svc: Services, chunk: Job) -> Job:
    """Return the chunk as the rescue reads it: its lease expired."""
    with svc.store.sessions() as session:
        session.get(Job, chunk.id).lease_expires_at = chunk.started_at
        session.commit()
    return svc.store.get(chunk.id)


def test_a_lost_chunk_splits_only_when_its_attempt_is_charged(svc: Services) -> None:
    batch = _store(svc, 8, chunk=8)
    chunk = _lose(svc, _claim(svc, _chunks(svc, batch)[0]))
    row = svc.store.record(chunk, Expired(charged=False))  # lost beside others: again, whole
    assert row is not None and row.item_count == 8 and len(_chunks(svc, batch)) == 1
    chunk = _lose(svc, _claim(svc, _chunks(svc, batch)[0]))
    row = svc.store.record(chunk, Expired(charged=True))  # lost alone: it may be the killer
    assert row is not None and [r.item_count for r in _chunks(svc, batch)] == [4, 4]


def test_a_timed_out_chunk_splits_down_to_one_item_that_fails(svc: Services) -> None:
    batch = _store(svc, 2, chunk=2)
    row = svc.store.record(_claim(svc, _chunks(svc, batch)[0]), Event.TIMED_OUT)
    assert row is not None and row.item_count == 1
    row = svc.store.record(_claim(svc, _chunks(svc, batch)[0]), Event.TIMED_OUT)
    assert row is not None and row.status == "failed"  # one item: it fails, by a job's rules
    counts = batch_status(svc.sessions, batch.id)["counts"]
    assert (counts["failed"], counts["queued"]) == (1, 1)
    first, second = _lines(svc, batch)
    assert (first["status"], first["error"]["code"], second["status"]) == (
        "failed",
        "timeout",
        "queued",
    )
