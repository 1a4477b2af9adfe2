"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from api import services
from api.problems import problem
from shared.services import Services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Answer 200 while the process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Answer 200 when the database and the broker are reachable, else a 503 problem."""
    svc = services()
    checks = {"database": _check_db(svc), "broker": _check_broker(svc)}
    if all(v == "ok" for v in checks.values()):
        return jsonify({"status": "ok", "checks": checks})
    resp = problem(503, "Service Unavailable", "a dependency is unreachable", checks=checks)
    resp.headers["Retry-After"] = "5"
    return resp


def _check_db(svc: Services) -> str:
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _check_broker(svc: Services) -> str:
    try:
        with svc.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
