"""The OpenAPI 3 document, assembled from the pydantic schemas the endpoints validate with.

It is built on request, from the job types registered at that moment, so types that plugins
register (``AIGC_PLUGINS``) are described with their own params.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.exceptions import HTTPException

from api import spec_models, streams
from api.auth import OPEN_ENDPOINTS, required_scope
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import MAX_KEY_LENGTH
from shared.jobs import jobtypes
from shared.jobs.batches import BatchesPublic, BatchesQuery, BatchPublic
from shared.jobs.schemas import (
    ArtifactPublic,
    JobPublic,
    JobQuery,
    JobsPublic,
    JobsQuery,
    ModelUpdate,
    Problem,
)
from shared.observe.fleet import FleetPublic

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

LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "Resume after this event: the `id` of the last event received.",
    "schema": {"type": "string", "maxLength": 48},
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
    headers: tuple[dict[str, Any], ...] = ()
    redirect: str | None = None  # what a 307 instead of the body points to, if one may come
    events: streams.Events | None = None  # an event stream's events, instead of a body


ENDPOINTS: list[Endpoint] = [
    Endpoint("post", "/v1/jobs", "Submit a job", (202,), "JobPublic", {JSON: "JobCreate"}),
    Endpoint("get", "/v1/jobs", "List jobs, newest first", response="JobsPublic", query=JobsQuery),
    Endpoint("get", "/v1/jobs/{id}", "Get a job", response="JobPublic", query=JobQuery),
    Endpoint("post", "/v1/jobs/{id}/cancel", "Cancel a job", (200, 202), "JobPublic"),
    Endpoint(
        "get",
        "/v1/jobs/{id}/webhook-deliveries",
        "The job's webhook deliveries, with every attempt",
        response="WebhookDeliveries",
    ),
    Endpoint(
        "post",
        "/v1/webhooks/secret",
        "Rotate the tenant's webhook signing secret (shown once)",
        (201,),
        "WebhookSecret",
    ),
    Endpoint(
        "get",
        "/v1/jobs/{id}/events",
        "Stream a job's events (SSE): status, progress, text as decoded, then result",
        headers=(LAST_EVENT_ID,),
        events=streams.JOB_EVENTS,
    ),
    Endpoint(
        "get",
        "/v1/artifacts/{id}",
        "Download an artifact",
        response="*/*",
        redirect="A short-lived presigned URL of the file (AIGC_ARTIFACT_SERVE=redirect)",
    ),
    Endpoint(
        "post",
        "/v1/batches",
        "Submit a batch: JSON, JSONL in multipart 'file', or a JSONL body "
        "(application/x-ndjson, with type, model and webhook in the query string)",
        (202,),
        "BatchPublic",
        {JSON: "BatchCreate", MULTIPART: "BatchUpload"},
    ),
    Endpoint(
        "get",
        "/v1/batches",
        "List batches, newest first",
        response="BatchesPublic",
        query=BatchesQuery,
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
        "get",
        "/v1/batches/{id}/events",
        "Stream a batch's status and counts (SSE) as they change, then result",
        events=streams.BATCH_EVENTS,
    ),
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
    Endpoint(
        "patch",
        "/v1/models/{name}",
        "Publish a model to every tenant, or make it private again",
        response="ModelPublic",
        body={JSON: "ModelUpdate"},
    ),
    Endpoint(
        "get",
        "/v1/fleet",
        "Live workers, lanes and their depths, tenants' work and batching (admin)",
        response="FleetPublic",
    ),
    Endpoint("get", "/healthz", "Liveness", response="Health"),
    Endpoint("get", "/readyz", "Readiness of the database and broker", response="Health"),
    Endpoint("get", "/metrics", "Prometheus metrics, in its text format", response="text/plain"),
]
EXTRA_ENDPOINTS: list[Endpoint] = []
SCHEMAS: list[type[BaseModel]] = [
    JobPublic,
    JobsPublic,
    ArtifactPublic,
    ModelUpdate,
    Problem,
    spec_models.DatasetUpload,
    BatchPublic,
    BatchesPublic,
    spec_models.DatasetPublic,
    spec_models.DatasetsPublic,
    spec_models.ModelPublic,
    spec_models.ModelsPublic,
    spec_models.Health,
    spec_models.WebhookDeliveries,
    spec_models.WebhookSecret,
    spec_models.TextChunk,
    FleetPublic,
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _content(response: str) -> dict[str, Any]:
    if "/" in response:  # a media type: the body is a file or a stream of lines, not one document
        return {response: {"schema": {"type": "string"}}}
    return {JSON: {"schema": _ref(response)}}


def _event_stream(events: streams.Events) -> dict[str, Any]:
    """Return an event stream's content: the schema of one event, each name with its data."""
    return {
        streams.SSE: {
            "schema": {"oneOf": [_event(n, c, events.ids) for n, c in events.data.items()]}
        }
    }


def _event(name: str, component: str, with_id: bool) -> dict[str, Any]:
    # OpenAPI 3.2's form of an event (3.1 has no other): its fields, the data a JSON document.
    data = {"type": "string", "contentMediaType": JSON, "contentSchema": _ref(component)}
    fields = {
        "event": {"const": name},
        "data": data,
        **({"id": {"type": "string"}} if with_id else {}),
    }
    return {"type": "object", "properties": fields, "required": list(fields)}


# The answers every authenticated operation may give, besides its own.
AUTH_PROBLEMS = {
    "401": "No API key, or one unknown or revoked (with WWW-Authenticate)",
    "403": "The key lacks the operation's scope",
    "429": "Over the key's rate limit or the tenant's caps (with Retry-After, RateLimit-*)",
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _responses(endpoint: Endpoint, secured: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if endpoint.response is not None:
        ok["content"] = _content(endpoint.response)
    if endpoint.events is not None:
        ok["content"] = _event_stream(endpoint.events)
    auth = {code: _problem(text) for code, text in AUTH_PROBLEMS.items()} if secured else {}
    moved = {"307": _redirect(endpoint.redirect)} if endpoint.redirect else {}
    return {
        **{str(status): ok for status in endpoint.ok},
        **moved,
        **auth,
        "4XX": _problem("Problem"),
        "5XX": _problem("Problem"),
    }


def _redirect(description: str) -> dict[str, Any]:
    location = {"description": "Where the file is", "schema": {"type": "string", "format": "uri"}}
    return {"description": description, "headers": {"Location": location}}


def _request_body(body: dict[str, str]) -> dict[str, Any]:
    content: dict[str, Any] = {media: {"schema": _ref(name)} for media, name in body.items()}
    if body.get(MULTIPART) == "DatasetUpload":
        content[MULTIPART]["encoding"] = {"file": DATASET_FILE}
    return {"required": True, "content": content}


def _parameters(endpoint: Endpoint, view: Callable[..., Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = list(endpoint.headers)
    if getattr(view, "idempotent", False):
        params.append(
            {
                "name": IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "description": "A replay within 24 h returns the first answer and creates nothing.",
                # Printable, as the API checks; HTTP strips spaces at either end.
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_KEY_LENGTH,
                    "pattern": "^[!-~]([ -~]*[!-~])?$",
                },
            }
        )
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
    view = _view(endpoint)
    function = current_app.view_functions[view]
    scope = required_scope(function)
    secured = view not in OPEN_ENDPOINTS
    op: dict[str, Any] = {"summary": endpoint.summary, "responses": _responses(endpoint, secured)}
    # Security comes from the view itself (its scope decorator), so the two cannot disagree.
    op["security"] = [{"bearer": []}] if secured else []
    if scope:
        op["x-required-scope"] = scope
        op["description"] = f"Needs a key with the `{scope}` scope (or `admin`)."
    if params := _parameters(endpoint, function):
        op["parameters"] = params
    if endpoint.body:
        op["requestBody"] = _request_body(endpoint.body)
    return op


def _schemas() -> dict[str, Any]:
    """Return every component schema, the job-type unions built from the registry as it is now."""
    dynamic = [spec_models.job_create(), spec_models.batch_create(), spec_models.batch_upload()]
    # Query models too: a query value may refer to a shared schema (a job status, say).
    queries = [e.query for e in ENDPOINTS if e.query is not None]
    models = SCHEMAS + dynamic + queries + [t.params for t in jobtypes.all_types()]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return _drop_null_defaults(top["$defs"])


def _drop_null_defaults(node: Any) -> Any:
    """Remove ``default: null`` from schemas that leave null out (``SkipJsonSchema[None]``).

    Such a field is optional but never null when present; a null default would contradict its
    own schema, which is invalid OpenAPI.
    """
    if isinstance(node, list):
        return [_drop_null_defaults(item) for item in node]
    if not isinstance(node, dict):
        return node
    typed = "type" in node and node["type"] != "null"
    return {
        key: _drop_null_defaults(value)
        for key, value in node.items()
        if not (key == "default" and value is None and typed)
    }


def _view(endpoint: Endpoint) -> str:
    """Return the name of the view that serves an endpoint, matched as a request would be."""
    path = endpoint.path.replace("{id}", "00000000-0000-4000-8000-000000000000")
    path = path.replace("{name}", "x")
    try:
        view, _ = current_app.url_map.bind("").match(path, method=endpoint.method.upper())
    except HTTPException as exc:  # the list names a route the app does not serve
        raise LookupError(f"no route serves {endpoint.method} {endpoint.path}") from exc
    return view


def build_spec() -> dict[str, Any]:
    """Return the OpenAPI document of every endpoint and job params schema."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS + EXTRA_ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "aigc-queue", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `aigc keys create` shows it once.",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Serve the OpenAPI document."""
    return jsonify(build_spec())
