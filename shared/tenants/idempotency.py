"""Responses kept for ``Idempotency-Key`` replays: claimed, stored and looked up per tenant."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from shared.db import utcnow
from shared.tables import IdempotentResponse
from shared.types import Claim, Sessions


class AlreadyStored(Exception):
    """Raised when another request stored a response under the same key first."""


def keep(conn: Connection, claim: Claim) -> None:
    """Keep the claim's response, in the caller's transaction; AlreadyStored if the key is taken."""
    conn.execute(  # an expired response under this key no longer counts
        delete(IdempotentResponse).where(
            IdempotentResponse.tenant_id == claim.tenant_id,
            IdempotentResponse.key == claim.key,
            IdempotentResponse.created_at < utcnow() - timedelta(seconds=claim.ttl_s),
        )
    )
    try:
        with conn.begin_nested():
            conn.execute(
                insert(IdempotentResponse).values(
                    tenant_id=claim.tenant_id,
                    key=claim.key,
                    request_hash=claim.request_hash,
                    status=claim.status,
                    body=claim.body,
                    headers=claim.headers,
                    created_at=utcnow(),
                )
            )
    except IntegrityError:
        raise AlreadyStored(claim.key) from None


def lookup(sessions: Sessions, claim: Claim) -> IdempotentResponse | None:
    """Return the unexpired response kept under the claim's key, if any."""
    since = utcnow() - timedelta(seconds=claim.ttl_s)
    with sessions() as session:
        return session.scalar(
            select(IdempotentResponse).where(
                IdempotentResponse.tenant_id == claim.tenant_id,
                IdempotentResponse.key == claim.key,
                IdempotentResponse.created_at >= since,
            )
        )
