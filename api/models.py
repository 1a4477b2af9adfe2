"""The models resource: the registry's models and their versions, as the tenant may see them."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api import deps
from api.auth import principal, requires
from api.requests import json_body
from shared.jobs.schemas import ModelUpdate
from shared.tenants.keys import ADMIN, JOBS_READ

bp = Blueprint("models", __name__, url_prefix="/v1/models")


@bp.get("")
@requires(JOBS_READ)
def list_models() -> Response:
    """List the shared models and the tenant's own, with their versions."""
    return jsonify({"data": deps.registry().list_models(principal())})


@bp.get("/<name>")
@requires(JOBS_READ)
def get_model(name: str) -> Response:
    """Return one model with its versions."""
    return jsonify(deps.registry().get_model(name, principal()))


@bp.patch("/<name>")
@requires(ADMIN)
def update_model(name: str) -> Response:
    """Publish a tenant's model to every tenant (read-only), or make it private again."""
    body = json_body(ModelUpdate)
    registry = deps.registry()
    registry.set_shared(name, body.shared)
    return jsonify(registry.get_model(name, principal()))
