"""The artifacts resource: files served by artifact id, never by path, to their tenant."""

from __future__ import annotations

from flask import Blueprint, Response, send_file

from api import services
from api.auth import principal, requires
from api.requests import path_uuid
from shared.tenants.keys import JOBS_READ

bp = Blueprint("artifacts", __name__, url_prefix="/v1/artifacts")


@bp.get("/<artifact_id>")
@requires(JOBS_READ)
def get_artifact(artifact_id: str) -> Response:
    """Send the stored file with its media type and checksum.

    A tenant reads its own files and the files of shared models' versions; any other file
    answers as one that does not exist.
    """
    svc, who = services(), principal()
    row, path = svc.artifacts.get(
        path_uuid(artifact_id, "artifact"),
        lambda a: who.sees(a.tenant_id) or svc.registry.shares_file(a.id),
    )
    resp = send_file(
        path, mimetype=row.media_type, conditional=True, etag=row.sha256, max_age=86400
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "private, max-age=86400"  # never in a shared cache
    return resp
