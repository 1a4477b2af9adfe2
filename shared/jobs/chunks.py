"""A batch's chunks as stored: its items in one blob, its results as ready JSONL lines.

A chunk row (a ``jobs`` row with ``item_count`` set) carries ``items``, the chunk's
``[custom_id, params]`` pairs encoded once at submit, and once it succeeded ``item_results``,
one result line per item in submit order. The results endpoint streams those bytes as they are,
so a finished item costs no encoding when it is read; the worker decodes the items with
``orjson`` and encodes their lines with it, and does nothing else per item.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from shared.errors import AigcError
from shared.jobs.attempts import error_doc
from shared.jobs.status import JobStatus

Item = tuple[str, dict[str, Any]]  # (custom_id, params as validated at submit)

# NumPy scalars and arrays are written as JSON numbers and lists, not refused.
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def encode_items(items: Sequence[Item]) -> bytes:
    """Return the stored blob of a chunk's items."""
    return orjson.dumps([[custom_id, params] for custom_id, params in items])


def decode_items(blob: bytes) -> list[Item]:
    """Return a chunk's items from its stored blob."""
    return [(custom_id, params) for custom_id, params in orjson.loads(blob)]


def halves(blob: bytes) -> tuple[bytes, bytes, int]:
    """Split a chunk's items in two; return both blobs and the first half's item count."""
    items = orjson.loads(blob)
    middle = len(items) // 2
    return orjson.dumps(items[:middle]), orjson.dumps(items[middle:]), middle


def result_line(custom_id: str, outcome: dict[str, Any] | BaseException) -> tuple[bytes, bool]:
    """Return one item's result line, and whether the item failed."""
    if isinstance(outcome, BaseException):
        error = error_doc(getattr(outcome, "code", AigcError.code), _message(outcome))
        line = {"custom_id": custom_id, "status": JobStatus.FAILED, "error": error}
        return orjson.dumps(line, option=_OPTIONS) + b"\n", True
    line = {"custom_id": custom_id, "status": JobStatus.SUCCEEDED, "result": outcome}
    return orjson.dumps(line, option=_OPTIONS) + b"\n", False


def _message(exc: BaseException) -> str:
    # An AigcError's message is for the client; anything else names its type, never a trace.
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) else f"{type(exc).__name__}: {exc}"


def result_lines(
    items: Sequence[Item], outcomes: Sequence[dict[str, Any] | BaseException]
) -> tuple[bytes, int]:
    """Return a finished chunk's result lines and how many of its items failed."""
    lines, failed = [], 0
    for (custom_id, _), outcome in zip(items, outcomes, strict=True):
        line, bad = result_line(custom_id, outcome)
        lines.append(line)
        failed += bad
    return b"".join(lines), failed


def status_lines(blob: bytes, status: str, error: dict[str, Any] | None) -> bytes:
    """Return the result lines of a chunk that did not succeed: its status (and error) per item."""
    line: dict[str, Any] = {"status": status}
    if error and status in (JobStatus.FAILED, JobStatus.CANCELED):
        line["error"] = error
    return b"".join(
        orjson.dumps({"custom_id": custom_id, **line}) + b"\n"
        for custom_id, _ in orjson.loads(blob)
    )


def chunk_row(*, batch_index: int, items: bytes, item_count: int, **columns: Any) -> dict[str, Any]:
    """Return a new, queued chunk row (its batch's columns in ``columns``), attempts at none."""
    return {
        "id": uuid.uuid4(),
        "params": {},
        "status": JobStatus.QUEUED,
        "version": 0,
        "attempts": 0,
        "priority": 0,
        "cancel_requested": False,
        "solo": False,
        **columns,
        "batch_index": batch_index,
        "items": items,
        "item_count": item_count,
    }


def second_half(first: Any, items: bytes, count: int) -> dict[str, Any]:
    """Return the new row of a split chunk's second half, after the row ``first`` kept.

    It keeps its batch's place in the pacer's order (the parent's ``created_at``) and the
    parent's errors, and starts its attempts anew.
    """
    kept = ("type", "model", "tenant_id", "batch_id", "max_attempts", "priority", "created_at")
    return chunk_row(
        batch_index=first.batch_index + first.item_count,
        items=items,
        item_count=count,
        error=first.error,
        errors=first.errors,
        solo=first.solo,
        **{name: getattr(first, name) for name in kept},
    )
