"""Tenants: their names, weights (shares of the workers) and caps, read and set by operators."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import InputError, NotFound
from shared.tables import Tenant
from shared.webhooks import new_secret

NAME_MAX = 64


def get_tenant(sessions: sessionmaker[Session], *, name: str, create: bool = False) -> Tenant:
    """Return the tenant called ``name``, creating it if asked; NotFound otherwise."""
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise InputError(f"a tenant name is 1 to {NAME_MAX} printable characters", field="tenant")
    with sessions() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == name))
        if tenant is None and create:
            tenant = Tenant(name=name, weight=1.0)
            session.add(tenant)
            try:
                session.commit()
            except IntegrityError:  # another request created it first: theirs is the one
                session.rollback()
                tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"tenant {name!r} not found")
    return tenant


def update_tenant(
    sessions: sessionmaker[Session],
    *,
    name: str,
    weight: float | None = None,
    max_running: int | None = None,
    max_queued: int | None = None,
    rate_limit: str | None = None,
    retention_days: float | None = None,
) -> Tenant:
    """Set a tenant's weight, caps, rate limit or retention (0 or "" clears one to the default)."""
    if weight is not None and not 0 < weight <= 1000:
        raise InputError("a weight is above 0 and at most 1000", field="weight")
    if retention_days is not None and retention_days < 0:
        raise InputError("retention_days is 0 (the default) or more", field="retention_days")
    if rate_limit:
        check_rate_limit(rate_limit, "rate_limit")
    for field, value in (("max_running", max_running), ("max_queued", max_queued)):
        if value is not None and value < 0:
            raise InputError(f"{field} is 0 (the default) or more", field=field)
    tenant = get_tenant(sessions, name=name)
    with sessions() as session:
        row = session.get(Tenant, tenant.id)
        assert row is not None
        if weight is not None:
            row.weight = weight
        if max_running is not None:
            row.max_running = max_running or None
        if max_queued is not None:
            row.max_queued = max_queued or None
        if rate_limit is not None:
            row.rate_limit = rate_limit if rate_limit not in ("", "0") else None
        if retention_days is not None:
            row.retention_days = retention_days or None
        session.commit()
        return row


def list_tenants(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    """Return every tenant with its weight and caps (None: the setting's default)."""
    with sessions() as session:
        rows = session.scalars(select(Tenant).order_by(Tenant.name))
        return [
            {
                "id": str(t.id),
                "name": t.name,
                "weight": t.weight,
                "max_running": t.max_running,
                "max_queued": t.max_queued,
                "rate_limit": t.rate_limit,
                "retention_days": t.retention_days,
                "created_at": t.created_at.isoformat(),
            }
            for t in rows
        ]


def check_rate_limit(value: str, field: str) -> str:
    """Return a rate limit in flask-limiter's syntax ("200/second;5000/minute"), or raise."""
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise InputError(
            f"{value!r} is not a rate limit such as '200/second;5000/minute'", field=field
        ) from None
    return value


def rotate_webhook_secret(sessions: sessionmaker[Session], tenant_id: uuid.UUID) -> str:
    """Give the tenant a new webhook signing secret and return it (shown only now)."""
    secret = new_secret()
    with sessions() as session:
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(webhook_secret=secret))
        session.commit()
    return secret


def require_webhook_secret(sessions: sessionmaker[Session], tenant_id: uuid.UUID) -> None:
    """Raise InputError (on ``webhook``) unless the tenant can sign webhooks."""
    with sessions() as session:
        secret = session.scalar(select(Tenant.webhook_secret).where(Tenant.id == tenant_id))
    if not secret:
        raise InputError(
            "the tenant has no webhook secret yet: create one with POST /v1/webhooks/secret",
            field="webhook",
        )
