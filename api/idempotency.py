"""``Idempotency-Key`` on submits: a replay returns the first response and creates nothing.

The response is stored in the same transaction as the jobs it describes, keyed by (tenant,
key): of two concurrent requests with one key, the database lets one insert and the other
replays it. The same key with a different request is a 422. Keys are kept for
``idempotency_ttl_s`` (24 h).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, g, jsonify, request

from api import deps
from api.auth import principal
from shared.errors import InputError
from shared.tenants.idempotency import AlreadyStored, Claim, lookup

F = TypeVar("F", bound=Callable[..., Any])
HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def idempotent(view: F) -> F:
    """Decorate a submit view: replay the stored response of a key seen before."""

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        claim = _claim(key)
        stored = lookup(deps.sessions(), claim)
        if stored is not None:
            return _replay(stored, claim)
        g.idempotency = claim
        try:
            return view(*args, **kwargs)
        except AlreadyStored:  # a concurrent request with this key won
            return _replay(lookup(deps.sessions(), claim), claim)

    checked.idempotent = True  # type: ignore[attr-defined]  # read by the OpenAPI doc
    return checked  # type: ignore[return-value]


def pending(status: int, body: dict[str, Any], headers: dict[str, str]) -> Claim | None:
    """Return this request's claim on its key with the response to store, or None without one."""
    claim: Claim | None = g.get("idempotency")
    return claim.answer(status, body, headers) if claim else None


def _claim(key: str) -> Claim:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InputError(
            f"an idempotency key is 1 to {MAX_KEY_LENGTH} printable characters", field=HEADER
        )
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), request.get_data(cache=True)):
        digest.update(part)
        digest.update(b"\0")
    ttl_s = deps.settings().idempotency_ttl_s
    return Claim(principal().tenant_id, key, digest.hexdigest(), ttl_s)


def _replay(stored: Any, claim: Claim) -> tuple[Response, int, dict[str, str]]:
    if stored is None or stored.request_hash != claim.request_hash:
        raise InputError(f"this {HEADER} was used with a different request", field=HEADER)
    return jsonify(stored.body), stored.status, {**stored.headers, "Idempotent-Replayed": "true"}
