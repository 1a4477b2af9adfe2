"""The models resource: the registry's models and their versions."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api import services
from shared.errors import NotFound

bp = Blueprint("models", __name__, url_prefix="/v1/models")


@bp.get("")
def list_models() -> Response:
    """List every registered model with its versions."""
    return jsonify({"data": services().registry.list_models()})


@bp.get("/<name>")
def get_model(name: str) -> Response:
    """Return one model with its versions."""
    model = services().registry.get_model(name)
    if model is None:
        raise NotFound(f"model {name!r} not found")
    return jsonify(model)
