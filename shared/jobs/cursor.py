"""Opaque keyset cursors for listing jobs newest first."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from shared.errors import InputError


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """Return an opaque keyset cursor for the row at (created_at, id)."""
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Return (created_at, id) from a cursor, or raise InputError."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError("cursor is not valid", field="cursor") from exc
