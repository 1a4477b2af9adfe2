"""The artifacts resource: files served by artifact id, never by path, to their tenant.

A file is streamed from the store in chunks (never held whole in memory), or, with
``AIGC_ARTIFACT_SERVE=redirect``, handed over as a 307 to a short-lived presigned URL at which
the object store serves it itself. The tenant check (404) and retention (410) come first either
way: no URL is ever signed for a file the caller may not read.
"""

from __future__ import annotations

from typing import BinaryIO

from flask import Blueprint, Response, redirect, request
from werkzeug.wsgi import wrap_file

from api import deps
from api.auth import principal, requires
from api.requests import path_uuid
from shared.tables import Artifact
from shared.tenants.keys import JOBS_READ

bp = Blueprint("artifacts", __name__, url_prefix="/v1/artifacts")

CHUNK_BYTES = 64 * 1024  # read from the store and written to the client this much at a time
CACHE_S = 86_400  # an artifact never changes: the client may keep it a day


@bp.get("/<artifact_id>")
@requires(JOBS_READ)
def get_artifact(artifact_id: str) -> Response:
    """Send the stored file with its media type and checksum, or redirect to where it is.

    A tenant reads its own files and the files of shared models' versions; any other file
    answers as one that does not exist.
    """
    who, artifacts, registry = principal(), deps.artifacts(), deps.registry()
    row = artifacts.get(
        path_uuid(artifact_id, "artifact"),
        lambda a: who.sees(a.tenant_id) or registry.shares_file(a.id),
    )
    if deps.settings().artifact_serve == "redirect":
        return _redirect(artifacts.presigned_url(row))
    return _stream(row, artifacts.open(row))


def _stream(row: Artifact, body: BinaryIO) -> Response:
    """Relay the store's stream; the ETag is the checksum, so a client's copy is revalidated."""
    resp = Response(
        wrap_file(request.environ, body, CHUNK_BYTES),
        mimetype=row.media_type,
        direct_passthrough=True,
    )
    resp.content_length = row.size
    resp.set_etag(row.sha256)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = f"private, max-age={CACHE_S}"  # never in a shared cache
    return resp.make_conditional(request, accept_ranges=True, complete_length=row.size)


def _redirect(url: str) -> Response:
    """Send the client to the presigned URL; nobody may keep the answer past the URL's life."""
    resp = redirect(url, code=307)
    resp.headers["Cache-Control"] = "no-store"
    return resp
