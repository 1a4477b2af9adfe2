"""The jobs resource: submit, read, list and cancel."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, url_for

from api import deadline, hub, services
from api.requests import json_body, path_uuid, query
from shared.errors import NotFound
from shared.jobs.events import wait_for_end
from shared.jobs.reads import to_public
from shared.jobs.schemas import JobCreate, JobQuery, JobsPublic, JobsQuery
from shared.jobs.status import JobStatus
from shared.jobs.submit import build_job, submit
from shared.models.registry import submission_check

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


@bp.post("")
def create_job() -> tuple[Response, int, dict[str, str]]:
    """Validate and store a job, publish its id, and answer 202 with its location."""
    svc = services()
    body = json_body(JobCreate)
    job = build_job(
        body,
        settings=svc.settings,
        check_model=submission_check(svc.registry),
    )
    (job,) = submit(svc, [job])
    location = url_for("jobs.get_job", job_id=str(job.id))
    return jsonify(to_public(job)), 202, {"Location": location}


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    """Return one job (status cache first); with ``wait_s``, once it ends or the wait runs out."""
    parsed, q = path_uuid(job_id, "job"), query(JobQuery)
    store = services().store
    if q.wait_s:
        deadline.extend(q.wait_s + services().settings.api_request_timeout_s)
        job = wait_for_end(hub(), parsed, q.wait_s, lambda: store.get_public(parsed))
    else:
        job = store.get_public(parsed)
    if job is None:
        raise NotFound("job not found")
    return jsonify(job)


@bp.get("")
def list_jobs() -> Response:
    """Return a page of jobs, newest first, with the cursor of the next page."""
    q = query(JobsQuery)
    rows, next_cursor = services().store.page(
        status=q.status, type_=q.type, limit=q.limit, cursor=q.cursor
    )
    page = JobsPublic.model_validate(
        {"data": rows, "next_cursor": next_cursor}, from_attributes=True
    )
    return jsonify(page.model_dump(mode="json"))


@bp.post("/<job_id>/cancel")
def cancel_job(job_id: str) -> tuple[Response, int]:
    """Cancel a queued job now, or ask a running one to stop; 409 if it already ended."""
    job = services().store.request_cancel(path_uuid(job_id, "job"))
    return jsonify(to_public(job)), 202 if job.status == JobStatus.RUNNING else 200
