"""Responses kept for ``Idempotency-Key`` replays: claimed, stored and looked up per tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select

from shared.db import utcnow
from shared.tables import IdempotentResponse

if TYPE_CHECKING:
    from shared.services import Services


class AlreadyStored(Exception):
    """Raised when another request stored a response under the same key first."""


@dataclass(frozen=True)
class Claim:
    """A request's claim on its idempotency key, and (once known) the response to keep."""

    tenant_id: uuid.UUID
    key: str
    request_hash: str
    ttl_s: float
    status: int = 0
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def answer(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> Claim:
        """Return the claim with the response it will keep."""
        return replace(self, status=status, body=body, headers=headers)

    def store(self, conn: Connection) -> None:
        """Keep the response, in the caller's transaction; AlreadyStored if the key is taken."""
        from sqlalchemy.exc import IntegrityError

        conn.execute(  # an expired response under this key no longer counts
            delete(IdempotentResponse).where(
                IdempotentResponse.tenant_id == self.tenant_id,
                IdempotentResponse.key == self.key,
                IdempotentResponse.created_at < utcnow() - timedelta(seconds=self.ttl_s),
            )
        )
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(IdempotentResponse).values(
                        tenant_id=self.tenant_id,
                        key=self.key,
                        request_hash=self.request_hash,
                        status=self.status,
                        body=self.body,
                        headers=self.headers,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            raise AlreadyStored(self.key) from None


def lookup(services: Services, claim: Claim) -> IdempotentResponse | None:
    """Return the unexpired response kept under the claim's key, if any."""
    since = utcnow() - timedelta(seconds=claim.ttl_s)
    with services.store.sessions() as session:
        return session.scalar(
            select(IdempotentResponse).where(
                IdempotentResponse.tenant_id == claim.tenant_id,
                IdempotentResponse.key == claim.key,
                IdempotentResponse.created_at >= since,
            )
        )
