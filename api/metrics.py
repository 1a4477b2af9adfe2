"""The API's metrics at ``GET /metrics``: requests by route and status, latency, accepted jobs.

Under gunicorn every worker process records its own values in the API's metrics folder
(multiprocess mode), and whichever answers a scrape serves the sum. A route is Flask's URL rule
(``/v1/jobs/<job_id>``), never the raw path, so no id ever makes a series of its own. The
endpoint needs no key, and carries no tenant's data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Response, request, request_started
from prometheus_client import Counter, Histogram

from api import deps
from shared.observe.export import exposed_registry, render

bp = Blueprint("metrics", __name__)

# From a cached read (milliseconds) to a long poll's whole wait (up to 60 s).
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route serves
ROUTE_KEY = "aigc.route"

REQUESTS = Counter(
    "aigc_http_requests_total",
    "HTTP requests answered, by method, route and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "aigc_http_request_duration_seconds",
    "Time to answer a request (to the start of a streamed body), by method and route.",
    ["method", "route"],
    buckets=HTTP_BUCKETS_S,
)
ACCEPTED = Counter(
    "aigc_jobs_accepted_total", "Jobs stored, batch items included, by job type.", ["type"]
)


@bp.get("/metrics")
def metrics() -> Response:
    """Serve the metrics of every API process in Prometheus's text format."""
    body, content_type = render(exposed_registry(deps.settings()))
    return Response(body, content_type=content_type)


def accepted(type_name: str, count: int = 1) -> None:
    """Count jobs the API stored."""
    ACCEPTED.labels(type_name).inc(count)


def init_app(app: Flask) -> None:
    """Serve /metrics, and count every request whatever answers it (a deadline's 503 too)."""
    app.register_blueprint(bp)
    request_started.connect(_note_route, app)
    app.wsgi_app = HttpMetrics(app.wsgi_app)  # type: ignore[method-assign]


def _note_route(_: Flask, **__: Any) -> None:
    """Leave the matched route where the middleware finds it once the request is answered."""
    rule = request.url_rule
    request.environ[ROUTE_KEY] = rule.rule if rule is not None else UNMATCHED


class HttpMetrics:
    """WSGI middleware: times each request and counts its answer by route and status."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started, status = time.perf_counter(), ["500"]

        def noting(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, exc_info)

        try:
            return self.app(environ, noting)
        finally:
            method = environ.get("REQUEST_METHOD", "")
            method = method if method in METHODS else "other"
            route = environ.get(ROUTE_KEY, UNMATCHED)
            REQUESTS.labels(method, route, status[0]).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)
