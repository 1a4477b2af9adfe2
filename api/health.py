"""Liveness and readiness probes."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from api import services
from api.deadline import bounded
from api.problems import problem
from shared.services import Services

bp = Blueprint("health", __name__)
CHECK_S = 0.9  # seconds each dependency has to answer


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
    def ping() -> None:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    return _check(ping)


def _check_broker(svc: Services) -> str:
    def ping() -> None:
        with svc.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=CHECK_S)

    return _check(ping)


def _check(ping: Callable[[], None]) -> str:
    # Each check has its own deadline, so /readyz answers within about 2 s either way.
    try:
        bounded(ping, CHECK_S)
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
