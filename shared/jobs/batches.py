"""Bulk batches: validate every item as it arrives, store them in chunks, count and read them.

A batch is data, not jobs: its items are validated once, at submit, and stored a chunk at a
time (``shared.jobs.chunks``); the chunk is what the pacer releases, a worker claims, leases,
retries and commits. A batch's counts are its chunks' counters summed, and its results are
their result lines in submit order. An item is not a job of its own: it has no id to ``GET``.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import utcnow
from shared.errors import FieldErrors, Gone, InputError, NotFound, PayloadTooLarge
from shared.jobs import chunks, jobtypes, jsoninput
from shared.jobs.cursor import decode_cursor, encode_cursor
from shared.jobs.numbers import Int
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

MAX_JSON_ITEMS = 50_000  # the JSON form is parsed whole; a JSONL upload streams, to batch_max_items
MAX_JSON_BYTES = 200 * 1024 * 1024
DIGEST_BYTES = 16  # of each custom_id, kept to find a repeated one without keeping the ids


class BatchItem(Strict):
    """One item of a batch: the client's id for it and the job's params."""

    custom_id: str = Field(min_length=1, max_length=200)
    params: dict[str, Any]


class BatchCreate(WebhookRequest):
    """Body of ``POST /v1/batches`` (JSON form; JSONL uploads carry the items one per line)."""

    type: str = Field(min_length=1, max_length=64)
    model: str | None = Field(None, max_length=128)
    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_JSON_ITEMS)


class BatchPublic(BaseModel):
    """A batch with its counts by item status."""

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
    """Yield the items of a JSONL upload, one JSON object per non-empty line, as they arrive."""
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


@dataclass
class Staged:
    """A batch's validated chunks, spooled to a temporary file until they are stored.

    Validation runs as the upload arrives and holds one chunk at a time; the store's
    transaction then reads the chunks back, so it lasts as long as the inserts, not the upload.
    """

    file: IO[bytes]
    model: str | None  # the reference the chunks run with, resolved once for the batch
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # first index, items, bytes

    def rows(self, batch: Batch, settings: Settings) -> Iterator[dict[str, Any]]:
        """Yield the chunk rows to insert, in submit order; the spool file goes after."""
        with self.file:
            yield from self._rows(batch, settings)

    def _rows(self, batch: Batch, settings: Settings) -> Iterator[dict[str, Any]]:
        self.file.seek(0)
        now = utcnow()
        for first, count, size in self.spans:
            yield chunks.chunk_row(
                batch_index=first,
                items=self.file.read(size),
                item_count=count,
                type=batch.type,
                model=self.model,
                tenant_id=batch.tenant_id,
                batch_id=batch.id,
                created_at=now,
                max_attempts=settings.max_attempts,
            )


def stage(
    batch: Batch,
    items: Iterable[dict[str, Any]],
    *,
    settings: Settings,
    check_model: ModelCheck | None,
    max_items: int,
) -> Staged:
    """Validate every item, spooling chunks of them; one bad item rejects them all."""
    job_type = jobtypes.get(batch.type)
    if job_type.queue != "generate":
        raise InputError("batches take generation job types only", field="type")
    model = check_model_field(job_type, batch.model, {}, check_model)

    def validate(raw: dict[str, Any], prefix: str) -> chunks.Item:
        return _item(job_type, batch.model, raw, settings, check_model, prefix)

    spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed once its rows are read, or below)
    try:
        staged = Staged(spool, model)
        batch.item_count = _spool_all(staged, items, validate, settings.batch_chunk_size, max_items)
    except BaseException:
        spool.close()
        raise
    return staged


def _spool_all(
    staged: Staged,
    items: Iterable[dict[str, Any]],
    validate: Callable[[dict[str, Any], str], chunks.Item],
    chunk_size: int,
    max_items: int,
) -> int:
    """Validate and spool the items a chunk at a time; return how many there were."""
    digests, chunk, count = bytearray(), [], 0
    for index, raw in enumerate(items):
        if index >= max_items:
            raise PayloadTooLarge(f"this batch may hold at most {max_items} items", field="items")
        item = validate(raw, f"items[{index}]")
        digests += hashlib.blake2b(item[0].encode(), digest_size=DIGEST_BYTES).digest()
        chunk.append(item)
        count = index + 1
        if len(chunk) == chunk_size:
            _spool(staged, count - len(chunk), chunk)
            chunk = []
    if chunk:
        _spool(staged, count - len(chunk), chunk)
    if not count:
        raise InputError("the batch has no items", field="items")
    _refuse_repeats(digests)
    return count


def _item(
    job_type: jobtypes.JobType,
    model: str | None,
    raw: dict[str, Any],
    settings: Settings,
    check_model: ModelCheck | None,
    prefix: str,
) -> chunks.Item:
    item = parse_model(BatchItem, raw, prefix)
    params = validate_params(job_type, item.params, settings, f"{prefix}.params")
    _item_model(job_type, model, params, check_model, prefix)
    return item.custom_id, params


def _spool(staged: Staged, first: int, items: list[chunks.Item]) -> None:
    blob = chunks.encode_items(items)
    staged.file.write(blob)
    staged.spans.append((first, len(items), len(blob)))
    # A yield per chunk: under gevent (the API's server) a long upload whose bytes are already
    # buffered would otherwise hold the process's other requests for as long as it validates.
    time.sleep(0)


def _refuse_repeats(digests: bytearray) -> None:
    """Raise InputError naming the first item whose custom_id an earlier item has."""
    ids = np.frombuffer(bytes(digests), dtype=f"S{DIGEST_BYTES}")
    order = np.argsort(ids, kind="stable")
    repeats = order[1:][ids[order[1:]] == ids[order[:-1]]]
    if len(repeats):
        index = int(repeats.min())
        raise InputError("this custom_id is repeated", field=f"items[{index}].custom_id")


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
    max_items: int,
    store: JobStore,
    fill: FillWindow,
) -> Submission:
    """Validate every item and return the batch's submission for ``submit.accept``.

    Its write inserts the batch and its chunks in one transaction; its release is the pacer's
    ``fill``, which publishes the first chunks of the tenant's window.
    """
    batch.id = batch.id or uuid.uuid4()  # its chunks name it
    staged = stage(batch, items, settings=settings, check_model=check_model, max_items=max_items)
    batch.created_at, batch.cancel_requested = utcnow(), False  # known before it is stored
    return Submission(
        batch,
        batch.item_count,
        batch.webhook,
        write=lambda answer: store.create_batch(batch, staged.rows(batch, settings), answer=answer),
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


class BatchesPublic(BaseModel):
    """A page of batches, newest first."""

    data: list[BatchPublic]
    next_cursor: str | None


class BatchesQuery(Strict):
    """Query string of ``GET /v1/batches``."""

    limit: Int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=200)


def batch_status(sessions: Sessions, batch_id: uuid.UUID) -> dict[str, Any]:
    """Return a batch with its counts by item status, derived status and progress."""
    with sessions() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise NotFound("batch not found")
        counts = _item_counts(session, [batch_id])
    return batch_view(batch, *counts.get(batch_id, ({}, None)))


def batch_page(
    sessions: Sessions, *, tenant_id: uuid.UUID | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Return one page of a tenant's batches, newest first, and the cursor of the next page."""
    stmt = (
        select(Batch)
        .where(Batch.tenant_id == tenant_id)
        .order_by(Batch.created_at.desc(), Batch.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(Batch.created_at < at, and_(Batch.created_at == at, Batch.id < last_id))
        )
    with sessions() as session:
        rows = list(session.scalars(stmt))
        page = rows[:limit]
        counts = _item_counts(session, [b.id for b in page])
    more = len(rows) > limit
    return BatchesPublic(
        data=[batch_view(b, *counts.get(b.id, ({}, None))) for b in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    ).model_dump(mode="json")


def _item_counts(
    session: Session, batch_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[dict[str, int], datetime | None]]:
    """Return each batch's items by status (its chunks' counters summed) and its last end."""
    rows = session.execute(
        select(
            Job.batch_id,
            Job.status,
            func.sum(Job.item_count),
            func.sum(Job.items_failed),
            func.max(Job.finished_at),
        )
        .where(Job.batch_id.in_(batch_ids))
        .group_by(Job.batch_id, Job.status)
    ).all()
    found: dict[uuid.UUID, tuple[dict[str, int], datetime | None]] = {}
    for batch_id, status, items, failed, last in rows:
        counts, seen = found.get(batch_id, ({}, None))
        failed = int(failed or 0)  # a succeeded chunk's failed items
        counts[status] = counts.get(status, 0) + int(items or 0) - failed
        counts[JobStatus.FAILED] = counts.get(JobStatus.FAILED, 0) + failed
        found[batch_id] = counts, max((t for t in (seen, last) if t is not None), default=None)
    return found


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


RESULTS_PAGE = 16  # chunks read per transaction while a batch's results stream


def stream_results(sessions: Sessions, batch_id: uuid.UUID) -> Iterator[bytes]:
    """Yield the result lines of a batch's chunks in submit order, a page of chunks at a time.

    A succeeded chunk's lines are stored ready and go out as they are. Each page is its own
    short transaction: a slow reader must not hold one open (the server ends a transaction idle
    for ``db_statement_timeout_s``, and a long one holds back vacuum).
    """
    after = -1
    while True:
        stmt = (
            select(Job.batch_index, Job.status, Job.items, Job.item_results, Job.error)
            .where(Job.batch_id == batch_id, Job.batch_index > after)
            .order_by(Job.batch_index)
            .limit(RESULTS_PAGE)
        )
        with sessions() as session:
            rows = session.execute(stmt).all()
        for index, status, items, lines, error in rows:
            after = index
            if status == JobStatus.SUCCEEDED:
                yield lines
            else:
                yield chunks.status_lines(items, status, error)
        if len(rows) < RESULTS_PAGE:
            return
