"""Opaque keyset cursors for listing jobs newest first."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

from shared.errors import InputError


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """Return an opaque keyset cursor for the row at (created_at, id)."""
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Return (created_at in UTC, id) from a cursor, or raise InputError."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        return _utc(datetime.fromisoformat(stamp)), uuid.UUID(job_id)
    # OverflowError: a stamp near year 1 or 9999 whose offset moves it out of range in UTC.
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise InputError("cursor is not valid", field="cursor") from exc


def _utc(stamp: datetime) -> datetime:
    # Cursors are only ever encoded from stored, timezone-aware timestamps; a naive one is forged,
    # and the job store refuses to compare naive timestamps with its UTC column.
    if stamp.utcoffset() is None:
        raise ValueError("the cursor's timestamp has no timezone")
    return stamp.astimezone(UTC)
