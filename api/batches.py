"""The batches resource: bulk submission, status, streamed results and cancel."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context, url_for

from api import admission, deadline, deps, streams
from api.auth import owned, principal, requires
from api.idempotency import idempotent, pending
from api.metrics import accepted
from api.requests import json_body, path_uuid, query
from shared.delivery import pacer
from shared.errors import InputError
from shared.jobs.batches import (
    MAX_JSON_BYTES,
    BatchCreate,
    BatchesQuery,
    batch_owner,
    batch_page,
    batch_status,
    batch_submission,
    batch_view,
    check_results_kept,
    parse_jsonl,
    stream_results,
)
from shared.jobs.schemas import WebhookRequest
from shared.jobs.status import JobStatus
from shared.jobs.submit import accept, parse_model, submission_check
from shared.tables import Batch
from shared.tenants.keys import JOBS_READ, JOBS_WRITE

bp = Blueprint("batches", __name__, url_prefix="/v1/batches")


JSONL_TYPES = ("application/x-ndjson", "application/jsonl")
READ_BUFFER = 1024 * 1024


@bp.before_request
def _allow_large_batches() -> None:
    jsonl = request.mimetype in JSONL_TYPES or request.mimetype == "multipart/form-data"
    request.max_content_length = deps.settings().batch_max_bytes if jsonl else MAX_JSON_BYTES
    if request.method == "POST":
        deadline.extend(deps.settings().api_upload_timeout_s)


@bp.post("")
@requires(JOBS_WRITE)
@idempotent
def create_batch() -> tuple[Response, int, dict[str, str]]:
    """Accept a batch as JSON, a JSONL body or a JSONL upload; validate all items, then store.

    A JSONL body is read as it arrives (its options in the query string), a multipart upload
    from the file the server spooled it to: the API never holds a whole batch in memory.
    """
    who, settings, sessions = principal(), deps.settings(), deps.sessions()
    items: Iterable[dict[str, Any]]
    if request.mimetype in JSONL_TYPES:
        type_, model, hook = _options(request.args)
        # Werkzeug's body stream reads a line a byte at a time; a buffer reads it in blocks.
        body = io.BufferedReader(request.stream, READ_BUFFER)  # type: ignore[arg-type]
        items = parse_jsonl(body, settings.max_body_bytes)
    elif request.files:
        upload = request.files.get("file")
        if upload is None:
            raise InputError("send the JSONL as a multipart field named 'file'", field="file")
        type_, model, hook = _options(request.form)
        items = parse_jsonl(upload.stream, settings.max_body_bytes)
    else:
        body = json_body(BatchCreate)
        type_, model, items, hook = body.type, body.model, body.items, body
    if not type_:
        raise InputError("the batch needs a job type", field="type")
    batch = Batch(type=type_, model=model, item_count=0, tenant_id=who.tenant_id)
    batch.webhook, batch.webhook_events = hook.webhook, hook.webhook_events_filter
    publisher = deps.publisher()
    submission = batch_submission(
        batch,
        items,
        settings=settings,
        check_model=submission_check(deps.registry(), sessions, who),
        max_items=settings.batch_max_items,
        store=deps.store(),
        fill=lambda tenant_id: pacer.fill(sessions, publisher, settings, tenant_id),
    )
    public, headers = _answer(batch)
    accept(
        submission,
        who=who,
        sessions=sessions,
        settings=settings,
        answer=lambda _: pending(202, public, headers),
        guard=deadline.write_guard(lambda: _stored(batch.id)),
    )
    accepted(batch.type, submission.count)
    return jsonify(public), 202, headers


def _answer(batch: Batch) -> tuple[dict[str, Any], dict[str, str]]:
    """Return a submit's answer: the new batch's client view, and where to read it."""
    public = batch_view(batch, {JobStatus.QUEUED: batch.item_count}, None)
    return public, {"Location": url_for("batches.get_batch", batch_id=str(batch.id))}


def _stored(batch_id: uuid.UUID) -> bool:
    """Return whether the batch's row is in the database."""
    with deps.sessions()() as session:
        return session.get(Batch, batch_id) is not None


def _options(values: Mapping[str, str]) -> tuple[str, str | None, WebhookRequest]:
    """Return a JSONL batch's type, model and webhook, from its form or query string."""
    form: dict[str, Any] = {}
    if webhook := values.get("webhook"):
        form["webhook"] = webhook
    if events := values.get("webhook_events_filter"):
        form["webhook_events_filter"] = [e.strip() for e in events.split(",")]
    hook = parse_model(WebhookRequest, form, "")
    return values.get("type", ""), values.get("model") or None, hook  # type: ignore[return-value]


def _owned_batch(batch_id: str) -> uuid.UUID:
    parsed = path_uuid(batch_id, "batch")
    owned(batch_owner(deps.sessions(), parsed), "batch")
    return parsed


@bp.get("")
@requires(JOBS_READ)
def list_batches() -> Response:
    """Return a page of the tenant's batches, newest first, with the cursor of the next page."""
    q = query(BatchesQuery)
    page = batch_page(
        deps.sessions(), tenant_id=principal().tenant_id, limit=q.limit, cursor=q.cursor
    )
    return jsonify(page)


@bp.get("/<batch_id>")
@requires(JOBS_READ)
def get_batch(batch_id: str) -> Response:
    """Return the batch's status, counts by job status and progress."""
    return jsonify(batch_status(deps.sessions(), _owned_batch(batch_id)))


@bp.get("/<batch_id>/results")
@requires(JOBS_READ)
def get_results(batch_id: str) -> Response:
    """Stream one JSON line per item, in submit order."""
    parsed = _owned_batch(batch_id)  # 404 (or 410) before the stream starts
    check_results_kept(deps.sessions(), parsed)
    lines = stream_with_context(stream_results(deps.sessions(), parsed))
    return Response(lines, mimetype="application/x-ndjson")


@bp.get("/<batch_id>/events")
@requires(JOBS_READ)
def batch_events(batch_id: str) -> Response:
    """Stream the batch's status and counts (SSE) as they change, then its final counts."""
    sessions, parsed = deps.sessions(), _owned_batch(batch_id)
    return streams.response(
        streams.batch_events(
            admission.gated(lambda: batch_status(sessions, parsed)), deps.settings()
        )
    )


@bp.post("/<batch_id>/cancel")
@requires(JOBS_WRITE)
def cancel_batch(batch_id: str) -> tuple[Response, int]:
    """Cancel queued items now; running items stop at their next step."""
    parsed = _owned_batch(batch_id)
    deps.store().cancel_batch(parsed)
    return jsonify(batch_status(deps.sessions(), parsed)), 202
