"""Bulk batches: validate every item first, insert all rows at once, publish ids in chunks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from shared.config import Settings
from shared.db import utcnow
from shared.errors import FieldErrors, Gone, InputError, NotFound, PayloadTooLarge
from shared.jobs import jobtypes, jsoninput
from shared.jobs.schemas import Strict, WebhookRequest
from shared.jobs.status import TERMINAL, BatchStatus, JobStatus
from shared.jobs.store import JobStore
from shared.jobs.submit import (
    ModelCheck,
    Submission,
    check_model_field,
    parse_model,
    validate_params,
)
from shared.tables import Batch, Job
from shared.types import FillWindow, Sessions

MAX_ITEMS = 50_000
MAX_BYTES = 200 * 1024 * 1024


class BatchItem(Strict):
    """One item of a batch: the client's id for it and the job's params."""

    custom_id: str = Field(min_length=1, max_length=200)
    params: dict[str, Any]


class BatchCreate(WebhookRequest):
    """Body of ``POST /v1/batches`` (JSON form; JSONL uploads carry the items one per line)."""

    type: str = Field(min_length=1, max_length=64)
    model: str | None = Field(None, max_length=128)
    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ITEMS)


class BatchPublic(BaseModel):
    """A batch with its counts by job status."""

    id: uuid.UUID
    type: str
    model: str | None
    status: str = Field(description="Derived from its items' statuses.")
    counts: dict[str, int]
    total: int
    progress: float
    created_at: datetime
    finished_at: datetime | None
    expired_at: datetime | None = Field(None, description="When retention dropped its results.")
    results_url: str


def parse_jsonl(stream: IO[bytes], max_line_bytes: int) -> Iterator[dict[str, Any]]:
    """Yield the items of a JSONL upload, one JSON object per non-empty line."""
    index = 0
    while raw := stream.readline(max_line_bytes + 1):
        if len(raw) > max_line_bytes:  # read no further than the limit: a line may be huge
            raise PayloadTooLarge(f"a line is over {max_line_bytes} bytes", field=f"items[{index}]")
        if not raw.strip():
            continue
        item = jsoninput.loads(raw, f"items[{index}]")
        if not isinstance(item, dict):
            raise InputError("each line must be a JSON object", field=f"items[{index}]")
        index += 1
        yield item


def build_rows(
    batch: Batch,
    items: Iterable[dict[str, Any]],
    *,
    settings: Settings,
    check_model: ModelCheck | None,
) -> list[dict[str, Any]]:
    """Validate every item and return the job rows to insert; one bad item rejects them all."""
    job_type = jobtypes.get(batch.type)
    if job_type.queue != "generate":
        raise InputError("batches take generation job types only", field="type")
    batch.id = batch.id or uuid.uuid4()  # the rows need it before the batch is flushed
    now, seen, rows = utcnow(), set(), []
    for index, raw in enumerate(items):
        if index >= MAX_ITEMS:
            raise PayloadTooLarge(f"a batch holds at most {MAX_ITEMS} items", field="items")
        prefix = f"items[{index}]"
        item = parse_model(BatchItem, raw, prefix)
        if item.custom_id in seen:
            raise InputError(
                f"custom_id {item.custom_id!r} is repeated", field=f"{prefix}.custom_id"
            )
        seen.add(item.custom_id)
        params = validate_params(job_type, item.params, settings, f"{prefix}.params")
        model = _item_model(job_type, batch.model, params, check_model, prefix)
        rows.append(
            {
                "id": uuid.uuid4(),
                "type": job_type.name,
                "model": model,
                "params": params,
                "batch_id": batch.id,
                "tenant_id": batch.tenant_id,
                "batch_index": index,
                "custom_id": item.custom_id,
                "created_at": now,
                "published_at": None,  # the pacer releases them a few chunks at a time
                "attempts": 0,
                "max_attempts": settings.max_attempts,
                "priority": 0,
                "cancel_requested": False,
            }
        )
    if not rows:
        raise InputError("the batch has no items", field="items")
    batch.item_count = len(rows)
    return rows


def _item_model(
    job_type: jobtypes.JobType,
    model: str | None,
    params: dict[str, Any],
    check_model: ModelCheck | None,
    prefix: str,
) -> str | None:
    try:
        return check_model_field(job_type, model, params, check_model)
    except FieldErrors:
        raise
    except InputError as exc:
        # Item-level problems (a prompt without tokens) name the item; the model is batch-wide.
        if exc.field and exc.field.startswith("params"):
            raise InputError(exc.message, field=f"{prefix}.{exc.field}") from None
        raise


def batch_submission(
    batch: Batch,
    items: Iterable[dict[str, Any]],
    *,
    settings: Settings,
    check_model: ModelCheck | None,
    store: JobStore,
    fill: FillWindow,
) -> Submission:
    """Validate every item and return the batch's submission for ``submit.accept``.

    Its write inserts the batch and its jobs in one transaction; its release is the pacer's
    ``fill``, which publishes the first chunks of the tenant's window.
    """
    rows = build_rows(batch, items, settings=settings, check_model=check_model)
    batch.created_at, batch.cancel_requested = utcnow(), False  # known before it is stored
    return Submission(
        batch,
        len(rows),
        batch.webhook,
        write=lambda answer: store.create_batch(batch, rows, answer=answer),
        release=lambda: fill(batch.tenant_id),
    )


def batch_owner(sessions: Sessions, batch_id: uuid.UUID) -> uuid.UUID | None:
    """Return the tenant of a batch; NotFound if there is no such batch."""
    with sessions() as session:
        batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound("batch not found")
    return batch.tenant_id


def check_results_kept(sessions: Sessions, batch_id: uuid.UUID) -> None:
    """Raise Gone if retention has dropped the batch's results."""
    with sessions() as session:
        expired = session.scalar(select(Batch.expired_at).where(Batch.id == batch_id))
    if expired is not None:
        raise Gone(f"the batch's results expired at {expired.isoformat()} (retention)")


def batch_status(sessions: Sessions, batch_id: uuid.UUID) -> dict[str, Any]:
    """Return a batch with its counts by job status, derived status and progress."""
    with sessions() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise NotFound("batch not found")
        counts = dict(
            session.execute(
                select(Job.status, func.count())
                .where(Job.batch_id == batch_id)
                .group_by(Job.status)
            ).all()
        )
        last = session.scalar(select(func.max(Job.finished_at)).where(Job.batch_id == batch_id))
    return batch_view(batch, counts, last)


def batch_view(
    batch: Batch, counts: dict[str, int], last_finished: datetime | None
) -> dict[str, Any]:
    """Return the JSON-ready client view (``BatchPublic``) of a batch from its items' counts."""
    counts = {s.value: int(counts.get(s.value, 0)) for s in JobStatus}
    done = sum(counts[s] for s in TERMINAL)
    return BatchPublic(
        id=batch.id,
        type=batch.type,
        model=batch.model,
        status=derive_status(batch, counts, done),
        counts=counts,
        total=batch.item_count,
        progress=done / max(batch.item_count, 1),
        created_at=batch.created_at,
        finished_at=last_finished if done == batch.item_count else None,
        expired_at=batch.expired_at,
        results_url=f"/v1/batches/{batch.id}/results",
    ).model_dump(mode="json")


def derive_status(batch: Batch, counts: dict[str, int], done: int) -> BatchStatus:
    """Return the batch's status from its items' statuses."""
    if done < batch.item_count:
        return BatchStatus.CANCELLING if batch.cancel_requested else BatchStatus.IN_PROGRESS
    if batch.cancel_requested:
        return BatchStatus.CANCELED
    if counts[JobStatus.FAILED] == batch.item_count:
        return BatchStatus.FAILED
    return BatchStatus.COMPLETED


RESULTS_PAGE = 1000  # rows read per transaction while a batch's results stream


def stream_results(sessions: Sessions, batch_id: uuid.UUID) -> Iterator[str]:
    """Yield one JSON line per item in submit order, reading rows in pages (never all at once).

    Each page is its own short transaction: a slow reader must not hold one open (the server
    ends a transaction idle for ``db_statement_timeout_s``, and a long one holds back vacuum).
    """
    after = -1
    while True:
        stmt = (
            select(Job.batch_index, Job.custom_id, Job.status, Job.result, Job.error)
            .where(Job.batch_id == batch_id, Job.batch_index > after)
            .order_by(Job.batch_index)
            .limit(RESULTS_PAGE)
        )
        with sessions() as session:
            rows = session.execute(stmt).all()
        for index, *item in rows:
            after = index
            yield _result_line(*item)
        if len(rows) < RESULTS_PAGE:
            return


def _result_line(custom_id: str, status: str, result: Any, error: Any) -> str:
    line: dict[str, Any] = {"custom_id": custom_id, "status": status}
    if status == JobStatus.SUCCEEDED:
        line["result"] = result
    elif error:
        line["error"] = error
    return json.dumps(line) + "\n"
