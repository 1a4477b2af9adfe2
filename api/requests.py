"""Helpers that read and validate request bodies and query strings."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel

from shared.errors import InputError, NotFound
from shared.jobs.submit import parse_model

M = TypeVar("M", bound=BaseModel)


def json_body(schema: type[M]) -> M:
    """Parse the JSON body against ``schema``; malformed JSON or bad fields raise an InputError."""
    data: Any = request.get_json(silent=True)
    if data is None:
        raise InputError(
            "the body must be a JSON object (Content-Type: application/json)", field="body"
        )
    return parse_model(schema, data)  # type: ignore[return-value]


def query(schema: type[M]) -> M:
    """Parse the query string against ``schema``."""
    return parse_model(schema, request.args.to_dict())  # type: ignore[return-value]


def path_uuid(value: str, what: str) -> uuid.UUID:
    """Parse an id from the path; a malformed id is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} not found") from None
