"""The OpenAPI 3 document, assembled from the pydantic schemas the endpoints validate with.

It is built on request, from the job types registered at that moment, so types that plugins
register (``AIGC_PLUGINS``) are described with their own params.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api import spec_models
from shared.jobs import jobtypes
from shared.jobs.schemas import ArtifactPublic, JobPublic, JobQuery, JobsPublic, JobsQuery, Problem

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
JSON = "application/json"
MULTIPART = "multipart/form-data"
# Schemathesis (and other clients) read a part's file name from an example of this header.
DATASET_FILE = {
    "headers": {
        "Content-Disposition": {
            "schema": {"type": "string"},
            "example": 'form-data; name="file"; filename="corpus.txt"',
        }
    }
}


@dataclass(frozen=True)
class Endpoint:
    """One operation; schemas are named by their component, bodies by media type."""

    method: str
    path: str
    summary: str
    ok: tuple[int, ...] = (200,)
    response: str | None = None  # a JSON component, or a media type for a body that is not JSON
    body: dict[str, str] = field(default_factory=dict)
    query: type[BaseModel] | None = None


ENDPOINTS: list[Endpoint] = [
    Endpoint("post", "/v1/jobs", "Submit a job", (202,), "JobPublic", {JSON: "JobCreate"}),
    Endpoint("get", "/v1/jobs", "List jobs, newest first", response="JobsPublic", query=JobsQuery),
    Endpoint("get", "/v1/jobs/{id}", "Get a job", response="JobPublic", query=JobQuery),
    Endpoint("post", "/v1/jobs/{id}/cancel", "Cancel a job", (200, 202), "JobPublic"),
    Endpoint("get", "/v1/artifacts/{id}", "Download an artifact", response="*/*"),
    Endpoint(
        "post",
        "/v1/batches",
        "Submit a batch (JSON, or JSONL in multipart 'file')",
        (202,),
        "BatchPublic",
        {JSON: "BatchCreate", MULTIPART: "BatchUpload"},
    ),
    Endpoint("get", "/v1/batches/{id}", "Batch status and counts", response="BatchPublic"),
    Endpoint(
        "get",
        "/v1/batches/{id}/results",
        "Batch results as JSONL, in submit order",
        response="application/x-ndjson",
    ),
    Endpoint("post", "/v1/batches/{id}/cancel", "Cancel a batch", (202,), "BatchPublic"),
    Endpoint(
        "post",
        "/v1/datasets",
        "Upload a dataset (multipart field 'file')",
        (201,),
        "DatasetPublic",
        {MULTIPART: "DatasetUpload"},
    ),
    Endpoint("get", "/v1/datasets", "List datasets", response="DatasetsPublic"),
    Endpoint("get", "/v1/models", "List models and their versions", response="ModelsPublic"),
    Endpoint("get", "/v1/models/{name}", "Get a model and its versions", response="ModelPublic"),
    Endpoint("get", "/healthz", "Liveness", response="Health"),
    Endpoint("get", "/readyz", "Readiness of the database and broker", response="Health"),
]
EXTRA_ENDPOINTS: list[Endpoint] = []
SCHEMAS: list[type[BaseModel]] = [
    JobPublic,
    JobsPublic,
    ArtifactPublic,
    Problem,
    spec_models.DatasetUpload,
    spec_models.BatchPublic,
    spec_models.DatasetPublic,
    spec_models.DatasetsPublic,
    spec_models.ModelPublic,
    spec_models.ModelsPublic,
    spec_models.Health,
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _content(response: str) -> dict[str, Any]:
    if "/" in response:  # a media type: the body is a file or a stream of lines, not one document
        return {response: {"schema": {"type": "string"}}}
    return {JSON: {"schema": _ref(response)}}


def _responses(endpoint: Endpoint) -> dict[str, Any]:
    problem = {
        "description": "Problem",
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }
    ok: dict[str, Any] = {"description": "OK"}
    if endpoint.response is not None:
        ok["content"] = _content(endpoint.response)
    return {**{str(status): ok for status in endpoint.ok}, "4XX": problem, "5XX": problem}


def _request_body(body: dict[str, str]) -> dict[str, Any]:
    content: dict[str, Any] = {media: {"schema": _ref(name)} for media, name in body.items()}
    if body.get(MULTIPART) == "DatasetUpload":
        content[MULTIPART]["encoding"] = {"file": DATASET_FILE}
    return {"required": True, "content": content}


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    params = []
    for name in ("id", "name"):
        if "{" + name + "}" in endpoint.path:
            schema = {"type": "string", **({"format": "uuid"} if name == "id" else {})}
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if endpoint.query is not None:
        schema = endpoint.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            param = {"name": name, "in": "query", "required": name in required}
            params.append({**param, "schema": _present(prop)})
    return params


def _present(prop: dict[str, Any]) -> dict[str, Any]:
    """Return a query value's schema without its ``null`` branch (a query leaves null out)."""
    options = [s for s in prop.get("anyOf", []) if s.get("type") != "null"]
    if len(options) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**rest, **options[0]}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": endpoint.summary, "responses": _responses(endpoint)}
    if params := _parameters(endpoint):
        op["parameters"] = params
    if endpoint.body:
        op["requestBody"] = _request_body(endpoint.body)
    return op


def _schemas() -> dict[str, Any]:
    """Return every component schema, the job-type unions built from the registry as it is now."""
    dynamic = [spec_models.job_create(), spec_models.batch_create(), spec_models.batch_upload()]
    models = SCHEMAS + dynamic + [t.params for t in jobtypes.all_types()]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return top["$defs"]


def build_spec() -> dict[str, Any]:
    """Return the OpenAPI document of every endpoint and job params schema."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS + EXTRA_ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "aigc-queue", "version": "1"},
        "paths": paths,
        "components": {"schemas": _schemas()},
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Serve the OpenAPI document."""
    return jsonify(build_spec())
