"""Liveness and readiness probes."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery
from flask import Blueprint, Response, jsonify
from sqlalchemy import Engine, text

from api import deps
from api.deadline import bounded
from api.problems import problem

bp = Blueprint("health", __name__)
CHECK_S = 0.9  # seconds each dependency has to answer


@bp.get("/healthz")
def healthz() -> Response:
    """Answer 200 while the process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Answer 200 when the database and the broker are reachable, else a 503 problem."""
    checks = {"database": _check_db(deps.engine()), "broker": _check_broker(deps.celery())}
    if all(v == "ok" for v in checks.values()):
        return jsonify({"status": "ok", "checks": checks})
    resp = problem(503, "Service Unavailable", "a dependency is unreachable", checks=checks)
    resp.headers["Retry-After"] = "5"
    return resp


def _check_db(engine: Engine) -> str:
    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    return _check(ping)


def _check_broker(celery: Celery) -> str:
    def ping() -> None:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=CHECK_S)

    return _check(ping)


def _check(ping: Callable[[], None]) -> str:
    # Each check has its own deadline, so /readyz answers within about 2 s either way.
    try:
        bounded(ping, CHECK_S)
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
