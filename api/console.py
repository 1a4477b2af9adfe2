"""The web console: static pages at ``/console`` that call the public API with the user's key.

The files hold no data, so they need no key; every call the pages make carries the key the user
pasted in. The console is no API: it stays out of the OpenAPI document. ``config.json`` tells the
pages what the server knows and they must not restate (job types, states, the model kinds and
their default models): the submit page builds one form per kind from it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from api import deps
from shared.jobs import jobtypes
from shared.jobs.status import BATCH_TERMINAL, TERMINAL, JobStatus
from shared.models import kinds

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    static_folder="console_static",
    static_url_path="",
)

# The key lives in the page's sessionStorage: allow nothing but this origin's own files and API,
# and images from blob URLs (artifacts are fetched with the key, then shown from memory).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/")
def index() -> Response:
    """Serve the console's single page."""
    return bp.send_static_file("index.html")


@bp.get("/config.json")
def config() -> Response:
    """Return what the pages need from the server: job types and states, the model kinds."""
    settings = deps.settings()
    return jsonify(
        {
            "default_models": kinds.default_models(settings),
            "model_kinds": [_model_kind(k) for k in kinds.all_kinds()],
            "job_statuses": [s.value for s in JobStatus],
            "terminal_statuses": sorted(TERMINAL),
            "batch_terminal_statuses": sorted(BATCH_TERMINAL),
            "job_types": [_job_type(t) for t in jobtypes.all_types()],
        }
    )


def _job_type(job_type: jobtypes.JobType) -> dict[str, Any]:
    return {
        "name": job_type.name,
        "queue": job_type.queue,
        "model": job_type.model,
        "model_kind": job_type.model_kind,
        "params": job_type.params.model_json_schema(),
    }


def _model_kind(kind: kinds.ModelKind) -> dict[str, Any]:
    return {
        "name": kind.name,
        "train_job_type": kind.train_job_type,
        "generate": None if kind.generate is None else _form(kind.generate),
    }


def _form(form: kinds.GenerateForm) -> dict[str, Any]:
    # The fields' bounds and defaults are the job type's params schema, served with job_types.
    return {
        "job_type": form.job_type,
        "title": form.title,
        "button": form.button,
        "fields": [{"name": f.name, "label": f.label} for f in form.fields],
    }


@bp.after_request
def _harden(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-cache"  # revalidate: a new release is seen at once
    return resp
