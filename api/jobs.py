"""The jobs resource: submit, read, list and cancel."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api import admission, deadline, deps, streams
from api.auth import owned, principal, require, requires
from api.idempotency import idempotent, pending
from api.metrics import accepted
from api.requests import json_body, path_uuid, query
from shared.delivery.webhooks import deliveries_of
from shared.errors import NotFound
from shared.jobs import jobtypes
from shared.jobs.events import wait_for_end
from shared.jobs.reads import to_public
from shared.jobs.schemas import JobCreate, JobQuery, JobsPublic, JobsQuery
from shared.jobs.status import JobStatus
from shared.jobs.submit import accept, job_submission, submission_check
from shared.tables import Job
from shared.tenants.keys import JOBS_READ, JOBS_WRITE, MODELS_WRITE

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


@bp.post("")
@requires(JOBS_WRITE)
@idempotent
def create_job() -> tuple[Response, int, dict[str, str]]:
    """Validate and store a job, publish its id, and answer 202 with its location."""
    who, settings, store, sessions = principal(), deps.settings(), deps.store(), deps.sessions()
    body = json_body(JobCreate)
    if jobtypes.get(body.type).model == "target":
        require(MODELS_WRITE)  # training registers a model
    submission = job_submission(
        body,
        who=who,
        settings=settings,
        check_model=submission_check(deps.registry(), sessions, who),
        store=store,
        publisher=deps.publisher(),
    )
    job = submission.subject
    landed = deadline.write_guard(
        lambda: store.get(job.id) is not None,
        write_s=settings.api_request_timeout_s,  # the insert's own, whatever the checks took
    )
    accept(
        submission,
        who=who,
        sessions=sessions,
        settings=settings,
        answer=lambda j: pending(202, *_answer(j)),
        guard=landed,
    )
    accepted(job.type)
    public, headers = _answer(job)
    return jsonify(public), 202, headers


def _answer(job: Job) -> tuple[dict[str, Any], dict[str, str]]:
    """Return a submit's answer: the job's client view, and where to read it."""
    return to_public(job), {"Location": url_for("jobs.get_job", job_id=str(job.id))}


@bp.get("/<job_id>")
@requires(JOBS_READ)
def get_job(job_id: str) -> Response:
    """Return one job (status cache first); with ``wait_s``, once it ends or the wait runs out."""
    q = query(JobQuery)
    parsed, job = _owned_job(job_id)  # before any wait: another tenant's job does not exist
    if q.wait_s:
        store = deps.store()
        read = admission.gated(lambda: store.get_public(parsed))
        admission.step_out()  # the wait holds no slot; each of its reads takes one
        deadline.extend(q.wait_s + deps.settings().api_request_timeout_s)
        job = wait_for_end(deps.hub(), parsed, q.wait_s, read) or job
    return jsonify(job)


@bp.get("/<job_id>/events")
@requires(JOBS_READ)
def job_events(job_id: str) -> Response:
    """Stream the job's events (SSE): status, progress, text as decoded, then the result."""
    parsed, _ = _owned_job(job_id)
    cursor = streams.Cursor.parse(request.headers.get("Last-Event-ID"))
    store = deps.store()
    read = admission.gated(lambda: store.get_snapshot(parsed))
    events = streams.job_events(
        deps.settings(), deps.text_streams(), deps.hub(), parsed, cursor, read
    )
    return streams.response(events)


@bp.get("/<job_id>/webhook-deliveries")
@requires(JOBS_READ)
def webhook_deliveries(job_id: str) -> Response:
    """Return the job's webhook deliveries, with every attempt of each."""
    parsed, _ = _owned_job(job_id)
    return jsonify({"data": deliveries_of(deps.sessions(), parsed)})


def _owned_job(job_id: str) -> tuple[uuid.UUID, dict[str, Any]]:
    """Return the id and client view of a job the caller may see; 404 otherwise."""
    parsed = path_uuid(job_id, "job")
    job = deps.store().get_public(parsed)
    if job is None:
        raise NotFound("job not found")
    owned(uuid.UUID(job["tenant_id"]) if job.get("tenant_id") else None, "job")
    return parsed, job


@bp.get("")
@requires(JOBS_READ)
def list_jobs() -> Response:
    """Return a page of the tenant's jobs, newest first, with the cursor of the next page."""
    q = query(JobsQuery)
    rows, next_cursor = deps.store().page(
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
    store, parsed = deps.store(), path_uuid(job_id, "job")
    current = store.get(parsed)
    owned(current.tenant_id if current else None, "job")
    if current is None or current.batch_id is not None:  # a chunk is its batch's to cancel
        raise NotFound("job not found")
    job = store.request_cancel(parsed)
    return jsonify(to_public(job)), 202 if job.status == JobStatus.RUNNING else 200
