"""Helpers that read and validate request bodies and query strings."""

from __future__ import annotations

import uuid
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from shared.errors import InputError, NotFound
from shared.jobs import jsoninput
from shared.jobs.submit import field_errors, parse_model

M = TypeVar("M", bound=BaseModel)


def json_body(schema: type[M]) -> M:
    """Parse the JSON body against ``schema``; malformed JSON or bad fields raise an InputError."""
    if not request.is_json:
        raise InputError(
            "the body must be a JSON object (Content-Type: application/json)", field="body"
        )
    data = jsoninput.loads(request.get_data(cache=True))
    return parse_model(schema, data)  # type: ignore[return-value]


def query(schema: type[M]) -> M:
    """Parse the query string against ``schema``."""
    values = {name: text_value(value, name) for name, value in request.args.items()}
    try:
        # Every query value is text: strict numbers parse from digits ("20") in this mode alone.
        return schema.model_validate_strings(values)
    except ValidationError as exc:
        raise field_errors(exc) from None


def text_value(value: str, field: str) -> str:
    """Return a form or query value, or raise InputError if it holds NUL characters."""
    # PostgreSQL text cannot hold NUL: the statement would fail, as a 503, after validation.
    if "\x00" in value:
        raise InputError("the value must not hold NUL characters", field=field)
    return value


def path_uuid(value: str, what: str) -> uuid.UUID:
    """Parse an id from the path; a malformed id is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} not found") from None
