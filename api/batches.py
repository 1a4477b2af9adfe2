"""The batches resource: bulk submission, status, streamed results and cancel."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context, url_for

from api import services
from api.requests import json_body, path_uuid
from shared.errors import InputError
from shared.jobs.batches import (
    MAX_BYTES,
    BatchCreate,
    batch_status,
    build_rows,
    parse_jsonl,
    stream_results,
    submit_batch,
)
from shared.models.registry import submission_check
from shared.tables import Batch

bp = Blueprint("batches", __name__, url_prefix="/v1/batches")


@bp.before_request
def _allow_large_batches() -> None:
    request.max_content_length = MAX_BYTES


@bp.post("")
def create_batch() -> tuple[Response, int, dict[str, str]]:
    """Accept a batch as JSON or as a JSONL upload; validate all items before storing any."""
    svc = services()
    if request.files:
        upload = request.files.get("file")
        if upload is None:
            raise InputError("send the JSONL as a multipart field named 'file'", field="file")
        type_, model = request.form.get("type", ""), request.form.get("model") or None
        items: Iterable[dict[str, Any]] = parse_jsonl(upload.stream, svc.settings.max_body_bytes)
    else:
        body = json_body(BatchCreate)
        type_, model, items = body.type, body.model, body.items
    if not type_:
        raise InputError("the batch needs a job type", field="type")
    batch = Batch(type=type_, model=model, item_count=0)
    rows = build_rows(
        batch,
        items,
        settings=svc.settings,
        check_model=submission_check(svc.registry),
    )
    submit_batch(svc, batch, rows)
    location = url_for("batches.get_batch", batch_id=str(batch.id))
    return jsonify(batch_status(svc, batch.id)), 202, {"Location": location}


@bp.get("/<batch_id>")
def get_batch(batch_id: str) -> Response:
    """Return the batch's status, counts by job status and progress."""
    return jsonify(batch_status(services(), path_uuid(batch_id, "batch")))


@bp.get("/<batch_id>/results")
def get_results(batch_id: str) -> Response:
    """Stream one JSON line per item, in submit order."""
    svc = services()
    parsed = path_uuid(batch_id, "batch")
    batch_status(svc, parsed)  # 404 before the stream starts
    lines = stream_with_context(stream_results(svc, parsed))
    return Response(lines, mimetype="application/x-ndjson")


@bp.post("/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> tuple[Response, int]:
    """Cancel queued items now; running items stop at their next step."""
    svc = services()
    parsed = path_uuid(batch_id, "batch")
    svc.store.cancel_batch(parsed)
    return jsonify(batch_status(svc, parsed)), 202
