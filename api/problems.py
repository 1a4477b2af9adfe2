"""Maps every error to an ``application/problem+json`` response, without stack traces."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from shared import errors

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
RESERVED = frozenset({"type", "title", "status", "detail", "code", "errors"})

_STATUS: list[tuple[type[errors.AigcError], int]] = [
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.TooManyRequests, 429),
    (errors.PayloadTooLarge, 413),
    (errors.InputError, 422),
    (errors.NotFound, 404),
    (errors.Gone, 410),
    (errors.Conflict, 409),
    (errors.RetryableError, 503),
]


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> Response:
    """Return a problem+json response."""
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)


def _from_aigc(exc: errors.AigcError) -> Response:
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    field = getattr(exc, "field", None)
    field_list = getattr(exc, "errors", None)
    if field_list is None and field:
        field_list = [{"field": field, "message": exc.message}]
    extra = {k: v for k, v in exc.details.items() if isinstance(v, str | int) and k not in RESERVED}
    resp = problem(status, _title(status), exc.message, code=exc.code, errors=field_list, **extra)
    if isinstance(exc, errors.RetryableError):
        resp.headers["Retry-After"] = "5"
    if isinstance(exc, errors.TooManyRequests):
        resp.headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, errors.Unauthenticated):
        resp.headers["WWW-Authenticate"] = 'Bearer realm="aigc-queue"'
    return resp


def _from_http(exc: HTTPException) -> Response:
    status = exc.code or 500
    detail = exc.description if status < 500 else None
    # Too large: the body as a whole is at fault (an upload's size limit included).
    fields = [{"field": "body", "message": detail}] if status == 413 else None
    resp = problem(status, _title(status), detail, errors=fields)
    if status == 405 and exc.get_response().headers.get("Allow"):
        resp.headers["Allow"] = exc.get_response().headers["Allow"]
    return resp


def _from_db(exc: DBAPIError | PoolTimeout) -> Response:
    log.warning("database error: %s", exc.__class__.__name__)
    resp = problem(503, "Service Unavailable", "the job store is unavailable; try again")
    resp.headers["Retry-After"] = "5"
    return resp


def _from_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return problem(500, "Internal Server Error", "an unexpected error occurred; it was logged")


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def init_app(app: Flask) -> None:
    """Register the error handlers on the app."""
    app.register_error_handler(errors.AigcError, _from_aigc)
    app.register_error_handler(HTTPException, _from_http)
    app.register_error_handler(DBAPIError, _from_db)
    app.register_error_handler(PoolTimeout, _from_db)  # no connection free in time
    app.register_error_handler(Exception, _from_unexpected)
