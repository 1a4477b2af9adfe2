"""The datasets resource: validated uploads of training data."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select

from api import deps
from api.auth import principal, requires
from api.requests import text_value
from shared.data.datasets import Limits, normalize
from shared.errors import InputError, PayloadTooLarge
from shared.tables import Dataset
from shared.tenants.keys import JOBS_READ, MODELS_WRITE

bp = Blueprint("datasets", __name__, url_prefix="/v1/datasets")


@bp.before_request
def _allow_large_uploads() -> None:
    request.max_content_length = deps.settings().max_dataset_bytes


@bp.post("")
@requires(MODELS_WRITE)  # datasets exist to train models
def upload_dataset() -> tuple[Response, int]:
    """Validate a multipart upload completely, then store it; a rejected one stores nothing."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InputError("send the data as a multipart field named 'file'", field="file")
    filename = text_value(upload.filename, "file")
    name = (text_value(request.form.get("name", ""), "name") or filename)[:128]
    raw = upload.stream.read(deps.settings().max_dataset_bytes + 1)
    if len(raw) > deps.settings().max_dataset_bytes:
        raise PayloadTooLarge("the upload is too large", field="file")
    data = normalize(filename, raw, Limits())
    tenant_id = principal().tenant_id
    artifact = deps.artifacts().save(
        None, "dataset", data.media_type, data.data, data.suffix, tenant_id=tenant_id
    )
    row = Dataset(
        tenant_id=tenant_id,
        name=name,
        kind=data.kind,
        artifact_id=artifact.id,
        items=data.items,
        meta=dict(data.meta, source=filename[:200]),
    )
    with deps.sessions()() as session:
        session.add(row)
        session.commit()
    current_app.logger.info("dataset %s stored (%s, %d items)", row.id, row.kind, row.items)
    return jsonify(dataset_public(row, artifact.size, artifact.sha256)), 201


@bp.get("")
@requires(JOBS_READ)
def list_datasets() -> Response:
    """List the tenant's uploaded datasets, newest first."""
    with deps.sessions()() as session:
        rows = list(
            session.scalars(
                select(Dataset)
                .where(Dataset.tenant_id == principal().tenant_id)
                .order_by(Dataset.created_at.desc())
                .limit(deps.settings().page_limit_max)
            )
        )
    return jsonify({"data": [dataset_public(r) for r in rows]})


def dataset_public(row: Dataset, size: int | None = None, sha256: str | None = None) -> dict:
    """Return the client view of a dataset."""
    body = {
        "id": str(row.id),
        "name": row.name,
        "kind": row.kind,
        "items": row.items,
        "meta": row.meta,
        "created_at": row.created_at.isoformat(),
    }
    if size is not None:
        body.update(size=size, sha256=sha256)
    return body
