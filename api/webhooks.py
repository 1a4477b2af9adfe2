"""The tenant's webhook signing secret: rotated, and shown once, here."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api import deps
from api.auth import principal, requires
from shared.tenants.accounts import rotate_webhook_secret
from shared.tenants.keys import JOBS_WRITE

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


@bp.post("/secret")
@requires(JOBS_WRITE)
def rotate_secret() -> tuple[Response, int]:
    """Give the tenant a new webhook signing secret; the old one stops signing at once."""
    secret = rotate_webhook_secret(deps.sessions(), principal().tenant_id)
    return jsonify({"secret": secret}), 201
