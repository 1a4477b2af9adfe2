"""Parses untrusted JSON (request bodies, JSONL batch lines) within bounds, before it is validated.

Nesting is checked on the raw bytes before parsing, because ``json.loads`` recurses once per level
and a few kilobytes of ``[`` end in a RecursionError. Strings are then checked for text that
PostgreSQL cannot store (NUL, unpaired surrogates), which would otherwise fail the insert.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from shared.errors import InputError

# Arrays and objects nested deeper than this are refused unparsed; job params need 3-4 levels.
MAX_JSON_DEPTH = 32
# Bytes of bracket marks summed per numpy pass, so a huge body never needs one huge array.
_DEPTH_CHUNK_BYTES = 1024 * 1024
# A whole string literal (possessive: linear even when unterminated or full of backslashes).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# Openers count +1 and closers -1 (0xFF read as int8).
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_TEXT = "text must not hold NUL or unpaired surrogate characters"


def loads(raw: bytes, prefix: str = "") -> Any:
    """Parse untrusted JSON, or raise InputError naming the field at fault.

    The whole document is ``prefix`` (``body`` when there is none); a string inside it is
    ``prefix.key[0]``, as batch items are named.
    """
    if _too_deep(raw):
        raise InputError(
            f"JSON is nested deeper than {MAX_JSON_DEPTH} levels", field=prefix or "body"
        )
    try:
        value = json.loads(raw)
        _check_text(value, prefix)
    # JSONDecodeError and UnicodeDecodeError are ValueErrors. RecursionError is kept as a backstop:
    # the depth scan reads brackets as ASCII bytes, which UTF-16 or UTF-32 bodies are not.
    except (ValueError, RecursionError):
        raise InputError("not valid JSON", field=prefix or "body") from None
    return value


def _too_deep(raw: bytes) -> bool:
    steps = _STRING.sub(b"", raw).translate(_STEP, _NOT_BRACKET)
    level = 0
    for start in range(0, len(steps), _DEPTH_CHUNK_BYTES):
        chunk = np.frombuffer(steps[start : start + _DEPTH_CHUNK_BYTES], dtype=np.int8)
        levels = np.cumsum(chunk, dtype=np.int64) + level
        if levels.max() > MAX_JSON_DEPTH:
            return True
        level = int(levels[-1])
    return False


def _check_text(value: Any, path: str) -> None:
    """Raise InputError naming the first string (key or value) PostgreSQL could not store."""
    if isinstance(value, str) and _UNSTORABLE.search(value):
        raise InputError(UNSTORABLE_TEXT, field=path or "body")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path)
            _check_text(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{path}[{index}]")
