"""Every request carries ``Authorization: Bearer <key>``; each endpoint needs a scope.

The key is checked before the body is read, so a request without a valid key stores nothing:
401 with ``WWW-Authenticate`` when it is missing, unknown or revoked; 403 when it lacks the
endpoint's scope. Health checks, the OpenAPI document, the metrics and the console's files need
no key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, g, request

from api import deps
from shared.errors import Forbidden, NotFound, Unauthenticated
from shared.tenants.keys import LOCAL_TENANT, Principal

F = TypeVar("F", bound=Callable[..., Any])
# The console's files are open too: they hold no data, and their calls to the API carry the key.
OPEN_ENDPOINTS = frozenset(
    {
        "health.healthz",
        "health.readyz",
        "openapi.openapi_json",
        "metrics.metrics",
        "console.index",
        "console.config",
        "console.static",
    }
)


def init_app(app: Flask) -> None:
    """Authenticate every request before its view runs."""
    app.before_request(_authenticate)


def _authenticate() -> None:
    if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
        return  # open, or no such route (a 404 either way)
    keys = deps.keys()
    if not deps.settings().auth_required:
        g.principal = keys.local_principal(LOCAL_TENANT)
        return
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("send an API key: Authorization: Bearer <key>")
    principal = keys.verify(key.strip())
    if principal is None:
        raise Unauthenticated("the API key is unknown or revoked")
    g.principal = principal


def principal() -> Principal:
    """Return who the current request acts for."""
    return g.principal


def require(scope: str) -> None:
    """Raise Forbidden unless the request's key grants ``scope``."""
    if not principal().allows(scope):
        raise Forbidden(f"this key lacks the {scope!r} scope", scope=scope)


def requires(scope: str) -> Callable[[F], F]:
    """Decorate a view that needs ``scope``."""

    def decorate(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            require(scope)
            return view(*args, **kwargs)

        checked.required_scope = scope  # type: ignore[attr-defined]  # read by the OpenAPI doc
        return checked  # type: ignore[return-value]

    return decorate


def required_scope(view: Callable[..., Any]) -> str | None:
    """Return the scope a view needs, as its ``requires`` decorator declared it."""
    return getattr(view, "required_scope", None)


def owned(tenant_id: uuid.UUID | None, what: str) -> None:
    """Raise NotFound unless the current tenant owns the resource (or is an admin).

    Another tenant's resource answers exactly as one that does not exist.
    """
    who = principal()
    if tenant_id != who.tenant_id and not who.is_admin:
        raise NotFound(f"{what} not found")
