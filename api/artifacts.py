"""The artifacts resource: files served by artifact id, never by path."""

from __future__ import annotations

from flask import Blueprint, Response, send_file

from api import services
from api.requests import path_uuid

bp = Blueprint("artifacts", __name__, url_prefix="/v1/artifacts")


@bp.get("/<artifact_id>")
def get_artifact(artifact_id: str) -> Response:
    """Send the stored file with its media type and checksum."""
    row, path = services().artifacts.get(path_uuid(artifact_id, "artifact"))
    resp = send_file(
        path, mimetype=row.media_type, conditional=True, etag=row.sha256, max_age=86400
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
