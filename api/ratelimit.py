"""Rate limits per API key, with flask-limiter: counters in Redis when there is one, else memory.

One limit covers all of a key's requests, on every route: its tenant's own
(``aigc tenants set NAME --rate-limit``), else ``AIGC_RATE_LIMIT``. Over it, the
answer is 429 problem+json with ``Retry-After`` and the ``RateLimit-*`` headers of the IETF
draft (``RateLimit-Reset`` in seconds from now). Headers are sent on 429s only: reading the
window back for every answer would cost each request a second round trip to Redis.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, g, request
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit

from api.auth import OPEN_ENDPOINTS
from api.problems import problem
from shared.config import Settings


def init_app(app: Flask, settings: Settings) -> None:
    """Limit each key's requests; run after authentication, which names the key."""
    storage = settings.rate_limit_storage_url or settings.redis_url or "memory://"
    Limiter(
        _key,
        app=app,
        application_limits=[lambda: _limit(settings)],
        application_limits_exempt_when=lambda: request.endpoint in OPEN_ENDPOINTS,
        strategy="sliding-window-counter",
        storage_uri=storage,
        # A Redis blip lets requests through, counted in memory, rather than failing them.
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        headers_enabled=False,
        on_breach=_over_limit,
    )
    app.register_error_handler(RateLimitExceeded, lambda exc: exc.get_response())


def _key() -> str:
    principal = g.get("principal")
    if principal is None:  # an unmatched route: no key was checked
        return f"ip:{request.remote_addr}"
    return f"key:{principal.key_id or principal.tenant_id}"


def _limit(settings: Settings) -> str:
    principal = g.get("principal")
    return (principal and principal.rate_limit) or settings.rate_limit


def _over_limit(limit: RequestLimit) -> Response:
    reset_s = max(1, math.ceil(limit.reset_at - time.time()))
    item = limit.limit
    resp = problem(
        429,
        "Too Many Requests",
        f"this key is over its rate limit of {item}; retry in {reset_s} s",
        code="rate_limited",
    )
    resp.headers.update(
        {
            "Retry-After": str(reset_s),
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(max(0, limit.remaining)),
            "RateLimit-Reset": str(reset_s),
            "RateLimit-Policy": f"{item.amount};w={item.get_expiry()}",
        }
    )
    return resp
