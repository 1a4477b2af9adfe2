"""The jobs resource: submit, read, list and cancel."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api import admission, deadline, hub, services, streams
from api.auth import owned, principal, require, requires
from api.idempotency import idempotent, pending
from api.metrics import accepted
from api.requests import json_body, path_uuid, query
from shared.delivery.webhooks import deliveries_of
from shared.errors import NotFound
from shared.jobs import jobtypes
from shared.jobs.events import wait_for_end
from shared.jobs.reads import to_public
from shared.jobs.rows import new_row
from shared.jobs.schemas import JobCreate, JobQuery, JobsPublic, JobsQuery
from shared.jobs.status import JobStatus
from shared.jobs.submit import build_job, check_webhook, submission_check, submit
from shared.tenants.caps import check_queued_cap
from shared.tenants.keys import JOBS_READ, JOBS_WRITE, MODELS_WRITE

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


@bp.post("")
@requires(JOBS_WRITE)
@idempotent
def create_job() -> tuple[Response, int, dict[str, str]]:
    """Validate and store a job, publish its id, and answer 202 with its location."""
    svc, who = services(), principal()
    body = json_body(JobCreate)
    if jobtypes.get(body.type).model == "target":
        require(MODELS_WRITE)  # training registers a model
    job = build_job(body, settings=svc.settings, check_model=submission_check(svc, who))
    check_webhook(svc, who.tenant_id, job.webhook)
    job.tenant_id = who.tenant_id
    check_queued_cap(svc, who.tenant_id, 1)
    new_row(job)  # its id and defaults now, so the answer is known before it is stored
    public, headers = to_public(job), {"Location": url_for("jobs.get_job", job_id=str(job.id))}
    landed = deadline.write_guard(
        lambda: svc.store.get(job.id) is not None,
        write_s=svc.settings.api_request_timeout_s,  # the insert's own, whatever the checks took
    )
    submit(svc, [job], claim=pending(202, public, headers), guard=landed)
    accepted(job.type)
    return jsonify(public), 202, headers


@bp.get("/<job_id>")
@requires(JOBS_READ)
def get_job(job_id: str) -> Response:
    """Return one job (status cache first); with ``wait_s``, once it ends or the wait runs out."""
    q = query(JobQuery)
    parsed, job = _owned_job(job_id)  # before any wait: another tenant's job does not exist
    if q.wait_s:
        read = admission.gated(lambda: services().store.get_public(parsed))
        admission.step_out()  # the wait holds no slot; each of its reads takes one
        deadline.extend(q.wait_s + services().settings.api_request_timeout_s)
        job = wait_for_end(hub(), parsed, q.wait_s, read) or job
    return jsonify(job)


@bp.get("/<job_id>/events")
@requires(JOBS_READ)
def job_events(job_id: str) -> Response:
    """Stream the job's events (SSE): status, progress, text as decoded, then the result."""
    parsed, _ = _owned_job(job_id)
    cursor = streams.Cursor.parse(request.headers.get("Last-Event-ID"))
    store = services().store
    read = admission.gated(lambda: store.get_snapshot(parsed))
    return streams.response(streams.job_events(services(), hub(), parsed, cursor, read))


@bp.get("/<job_id>/webhook-deliveries")
@requires(JOBS_READ)
def webhook_deliveries(job_id: str) -> Response:
    """Return the job's webhook deliveries, with every attempt of each."""
    parsed, _ = _owned_job(job_id)
    return jsonify({"data": deliveries_of(services(), parsed)})


def _owned_job(job_id: str) -> tuple[uuid.UUID, dict[str, Any]]:
    """Return the id and client view of a job the caller may see; 404 otherwise."""
    parsed = path_uuid(job_id, "job")
    job = services().store.get_public(parsed)
    if job is None:
        raise NotFound("job not found")
    owned(uuid.UUID(job["tenant_id"]) if job.get("tenant_id") else None, "job")
    return parsed, job


@bp.get("")
@requires(JOBS_READ)
def list_jobs() -> Response:
    """Return a page of the tenant's jobs, newest first, with the cursor of the next page."""
    q = query(JobsQuery)
    rows, next_cursor = services().store.page(
        tenant_id=principal().tenant_id,
        status=q.status,
        type_=q.type,
        limit=q.limit,
        cursor=q.cursor,
    )
    page = JobsPublic.model_validate(
        {"data": rows, "next_cursor": next_cursor}, from_attributes=True
    )
    return jsonify(page.model_dump(mode="json"))


@bp.post("/<job_id>/cancel")
@requires(JOBS_WRITE)
def cancel_job(job_id: str) -> tuple[Response, int]:
    """Cancel a queued job now, or ask a running one to stop; 409 if it already ended."""
    store, parsed = services().store, path_uuid(job_id, "job")
    current = store.get(parsed)
    owned(current.tenant_id if current else None, "job")
    if current is None:
        raise NotFound("job not found")
    job = store.request_cancel(parsed)
    return jsonify(to_public(job)), 202 if job.status == JobStatus.RUNNING else 200
