"""The batches resource: bulk submission, status, streamed results and cancel."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context, url_for

from api import admission, deadline, services, streams
from api.auth import owned, principal, requires
from api.idempotency import idempotent, pending
from api.metrics import accepted
from api.requests import json_body, path_uuid
from shared.db import utcnow
from shared.errors import InputError
from shared.jobs.batches import (
    MAX_BYTES,
    BatchCreate,
    batch_owner,
    batch_status,
    batch_view,
    build_rows,
    check_results_kept,
    parse_jsonl,
    stream_results,
    submit_batch,
)
from shared.jobs.schemas import WebhookRequest
from shared.jobs.status import JobStatus
from shared.jobs.submit import check_webhook, parse_model, submission_check
from shared.services import Services
from shared.tables import Batch
from shared.tenants.caps import check_queued_cap
from shared.tenants.keys import JOBS_READ, JOBS_WRITE

bp = Blueprint("batches", __name__, url_prefix="/v1/batches")


@bp.before_request
def _allow_large_batches() -> None:
    request.max_content_length = MAX_BYTES
    if request.method == "POST":
        deadline.extend(services().settings.api_upload_timeout_s)


@bp.post("")
@requires(JOBS_WRITE)
@idempotent
def create_batch() -> tuple[Response, int, dict[str, str]]:
    """Accept a batch as JSON or as a JSONL upload; validate all items before storing any."""
    svc, who = services(), principal()
    if request.files:
        upload = request.files.get("file")
        if upload is None:
            raise InputError("send the JSONL as a multipart field named 'file'", field="file")
        type_, model = request.form.get("type", ""), request.form.get("model") or None
        hook = parse_model(WebhookRequest, _webhook_form(), "")
        items: Iterable[dict[str, Any]] = parse_jsonl(upload.stream, svc.settings.max_body_bytes)
    else:
        body = json_body(BatchCreate)
        type_, model, items, hook = body.type, body.model, body.items, body
    if not type_:
        raise InputError("the batch needs a job type", field="type")
    batch = Batch(type=type_, model=model, item_count=0, tenant_id=who.tenant_id)
    check_webhook(svc, who.tenant_id, hook.webhook)
    batch.webhook, batch.webhook_events = hook.webhook, hook.webhook_events_filter
    rows = build_rows(batch, items, settings=svc.settings, check_model=submission_check(svc, who))
    check_queued_cap(svc, who.tenant_id, len(rows))
    batch.created_at, batch.cancel_requested = utcnow(), False  # known before it is stored
    public = batch_view(batch, {JobStatus.QUEUED: len(rows)}, None)
    headers = {"Location": url_for("batches.get_batch", batch_id=str(batch.id))}
    landed = deadline.write_guard(lambda: _stored(svc, batch.id))
    submit_batch(svc, batch, rows, claim=pending(202, public, headers), guard=landed)
    accepted(batch.type, len(rows))
    return jsonify(public), 202, headers


def _stored(svc: Services, batch_id: uuid.UUID) -> bool:
    """Return whether the batch's row is in the database."""
    with svc.store.sessions() as session:
        return session.get(Batch, batch_id) is not None


def _webhook_form() -> dict[str, Any]:
    """Return a multipart batch's webhook fields (the filter comma-separated)."""
    form: dict[str, Any] = {}
    if webhook := request.form.get("webhook"):
        form["webhook"] = webhook
    if events := request.form.get("webhook_events_filter"):
        form["webhook_events_filter"] = [e.strip() for e in events.split(",")]
    return form


def _owned_batch(batch_id: str) -> uuid.UUID:
    parsed = path_uuid(batch_id, "batch")
    owned(batch_owner(services(), parsed), "batch")
    return parsed


@bp.get("/<batch_id>")
@requires(JOBS_READ)
def get_batch(batch_id: str) -> Response:
    """Return the batch's status, counts by job status and progress."""
    return jsonify(batch_status(services(), _owned_batch(batch_id)))


@bp.get("/<batch_id>/results")
@requires(JOBS_READ)
def get_results(batch_id: str) -> Response:
    """Stream one JSON line per item, in submit order."""
    parsed = _owned_batch(batch_id)  # 404 (or 410) before the stream starts
    check_results_kept(services(), parsed)
    lines = stream_with_context(stream_results(services(), parsed))
    return Response(lines, mimetype="application/x-ndjson")


@bp.get("/<batch_id>/events")
@requires(JOBS_READ)
def batch_events(batch_id: str) -> Response:
    """Stream the batch's status and counts (SSE) as they change, then its final counts."""
    svc, parsed = services(), _owned_batch(batch_id)
    return streams.response(
        streams.batch_events(admission.gated(lambda: batch_status(svc, parsed)), svc.settings)
    )


@bp.post("/<batch_id>/cancel")
@requires(JOBS_WRITE)
def cancel_batch(batch_id: str) -> tuple[Response, int]:
    """Cancel queued items now; running items stop at their next step."""
    svc, parsed = services(), _owned_batch(batch_id)
    svc.store.cancel_batch(parsed)
    return jsonify(batch_status(svc, parsed)), 202
