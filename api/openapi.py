"""The OpenAPI 3 document, assembled from the pydantic schemas the endpoints validate with."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel

from shared.jobs import jobtypes
from shared.jobs.schemas import ArtifactPublic, JobCreate, JobPublic, JobsPublic, Problem

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
# (method, path, summary, request schema, success status, response schema)
ENDPOINTS: list[tuple[str, str, str, type[BaseModel] | None, int, type[BaseModel] | None]] = [
    ("post", "/v1/jobs", "Submit a job", JobCreate, 202, JobPublic),
    ("get", "/v1/jobs", "List jobs, newest first", None, 200, JobsPublic),
    ("get", "/v1/jobs/{id}", "Get a job", None, 200, JobPublic),
    ("post", "/v1/jobs/{id}/cancel", "Cancel a job", None, 200, JobPublic),
    ("get", "/v1/artifacts/{id}", "Download an artifact", None, 200, None),
    ("post", "/v1/batches", "Submit a batch (JSON, or JSONL in multipart 'file')", None, 202, None),
    ("get", "/v1/batches/{id}", "Batch status and counts", None, 200, None),
    ("get", "/v1/batches/{id}/results", "Batch results as JSONL, in submit order", None, 200, None),
    ("post", "/v1/batches/{id}/cancel", "Cancel a batch", None, 202, None),
    ("post", "/v1/datasets", "Upload a dataset (multipart field 'file')", None, 201, None),
    ("get", "/v1/datasets", "List datasets", None, 200, None),
    ("get", "/v1/models", "List models and their versions", None, 200, None),
    ("get", "/v1/models/{name}", "Get a model and its versions", None, 200, None),
    ("get", "/healthz", "Liveness", None, 200, None),
    ("get", "/readyz", "Readiness of the database and broker", None, 200, None),
]
EXTRA_ENDPOINTS: list[
    tuple[str, str, str, type[BaseModel] | None, int, type[BaseModel] | None]
] = []
SCHEMAS: list[type[BaseModel]] = [JobCreate, JobPublic, JobsPublic, ArtifactPublic, Problem]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(
    summary: str, body: type[BaseModel] | None, status: int, out: type[BaseModel] | None
) -> dict[str, Any]:
    problem = {"content": {"application/problem+json": {"schema": _ref(Problem)}}}
    ok: dict[str, Any] = {"description": "OK"}
    if out is not None:
        ok["content"] = {"application/json": {"schema": _ref(out)}}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(status): ok,
            "4XX": {"description": "Problem", **problem},
            "5XX": {"description": "Problem", **problem},
        },
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def build_spec() -> dict[str, Any]:
    """Return the OpenAPI document of every endpoint and job params schema."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, status, out in ENDPOINTS + EXTRA_ENDPOINTS:
        op = _operation(summary, body, status, out)
        for param in ("id", "name"):
            if "{" + param + "}" in path:
                schema = {"type": "string", **({"format": "uuid"} if param == "id" else {})}
                op["parameters"] = [
                    {"name": param, "in": "path", "required": True, "schema": schema}
                ]
        paths.setdefault(path, {})[method] = op
    schemas: dict[str, Any] = {}
    models = SCHEMAS + [t.params for t in jobtypes.all_types()]
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "aigc-queue", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Serve the OpenAPI document."""
    return jsonify(build_spec())
