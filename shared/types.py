"""Types and ports that modules hand each other; a leaf: it imports nothing of this project.

In the spirit of river's ``rivertype``: a function names the narrow thing it takes (a
``Sessions`` factory, a ``Publisher``, a ``MarkPublished`` callable) by a type from here, so
no module needs the composition root (``shared.services``) to say what it is handed, and no
import circles back through it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

# Opens a session on the process's database (``shared.db.make_session_factory``).
Sessions = sessionmaker[Session]

# Wraps a write whose commit must stand even if the caller's deadline fires meanwhile.
WriteGuard = Callable[[], AbstractContextManager[object]]


class MarkPublished(Protocol):
    """Records that queued jobs' messages went to the broker now, or (False) did not."""

    def __call__(self, job_ids: Sequence[uuid.UUID], *, published: bool = True) -> None: ...


class JobRow(Protocol):
    """What every job row (the ORM object or a selected row) has for whoever publishes it."""

    id: uuid.UUID
    type: str
    tenant_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    priority: int
    created_at: datetime


class Publisher(Protocol):
    """Hands committed jobs to the broker (``shared.delivery.publish.Publisher``)."""

    def publish(self, jobs: Sequence[Any], *, stamped: bool, redo: bool = False) -> int:
        """Publish one message per job; return how many reached the broker."""
        ...


# Publishes the next chunks of a tenant's batches (the pacer's ``fill``, bound to its ports).
FillWindow = Callable[[uuid.UUID | None], int]


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
