"""Pydantic models that only describe the API in its OpenAPI document; nothing validates with them.

The endpoints validate with the schemas in ``shared``, which leave a job's ``params`` open because
they depend on its ``type``. The document spells that out per registered job type, along with the
multipart forms and the bodies that endpoints build as plain dicts.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, RootModel, WithJsonSchema, create_model
from pydantic.json_schema import SkipJsonSchema

from shared.jobs import jobtypes
from shared.jobs.batches import MAX_JSON_ITEMS, BatchCreate, BatchItem
from shared.jobs.schemas import WEBHOOK_EVENTS, WEBHOOK_EVENTS_DOC, JobCreate, WebhookEvent
from shared.models.registry import NAME_RE, REF_RE

# A file part of a multipart form.
Binary = Annotated[bytes, WithJsonSchema({"type": "string", "format": "binary"})]


def job_create() -> type[BaseModel]:
    """Return the body of ``POST /v1/jobs``: one member per registered job type, on ``type``."""
    return _union("JobCreate", [_job_create(t) for t in jobtypes.all_types()])


def batch_create() -> type[BaseModel]:
    """Return the JSON body of ``POST /v1/batches``: one member per generation job type."""
    return _union("BatchCreate", [_batch_create(t) for t in _batch_types()])


def batch_upload() -> type[BaseModel]:
    """Return the multipart form of ``POST /v1/batches``: a JSONL file of items."""
    names = tuple(t.name for t in _batch_types())
    return create_model(
        "BatchUpload",
        __doc__="A batch as a JSONL file: one {custom_id, params} object per line.",
        file=(Binary, ...),
        type=(Literal[names], ...),
        model=(str, Field("", max_length=128, description="The model every item runs on.")),
        webhook=(str, Field("", max_length=2048, description="Where the batch's events go.")),
        webhook_events_filter=(
            str,
            Field(
                "",
                pattern=_events_list(),
                description=f"Comma-separated: {WEBHOOK_EVENTS_DOC}.",
            ),
        ),
    )


def _events_list() -> str:
    """Return the pattern of a comma-separated list of webhook events, at most one per kind."""
    event = r"\s*(" + "|".join(WEBHOOK_EVENTS) + r")\s*"
    return f"^({event}(,{event}){{0,{len(WEBHOOK_EVENTS) - 1}}})?$"


def _batch_types() -> list[jobtypes.JobType]:
    # Batches take generation types only (see shared.jobs.batches.stage).
    return [t for t in jobtypes.all_types() if t.queue == "generate"]


def _union(name: str, members: list[type[BaseModel]]) -> type[BaseModel]:
    union = Annotated[Union[tuple(members)], Field(discriminator="type")]  # noqa: UP007
    return create_model(name, __base__=RootModel[union])  # type: ignore[valid-type]


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name))


def _job_create(job_type: jobtypes.JobType) -> type[BaseModel]:
    return create_model(
        f"{_camel(job_type.name)}JobCreate",
        __base__=JobCreate,
        __doc__=f"Body of ``POST /v1/jobs`` for a {job_type.name} job.",
        type=(Literal[job_type.name], ...),
        model=_model_field(job_type),
        params=_params_field(job_type),
    )


def _batch_create(job_type: jobtypes.JobType) -> type[BaseModel]:
    item = create_model(
        f"{_camel(job_type.name)}BatchItem",
        __base__=BatchItem,
        params=(job_type.params, ...),
    )
    return create_model(
        f"{_camel(job_type.name)}BatchCreate",
        __base__=BatchCreate,
        __doc__=f"Body of ``POST /v1/batches`` for {job_type.name} items.",
        type=(Literal[job_type.name], ...),
        model=_model_field(job_type),
        items=(list[item], Field(min_length=1, max_length=MAX_JSON_ITEMS)),  # type: ignore[valid-type]
    )


def _model_field(job_type: jobtypes.JobType) -> tuple[Any, Any]:
    """Return the ``model`` field a job type accepts, as shared.jobs.submit checks it."""
    if job_type.model == "none":
        return (SkipJsonSchema[None], Field(None, description="This job type takes no model."))
    # A training job names the model it registers; other jobs name a model, or one version of it.
    pattern = _portable(NAME_RE if job_type.model == "target" else REF_RE)
    if job_type.model == "optional":
        return (str | SkipJsonSchema[None], Field(None, max_length=128, pattern=pattern))
    return (str, Field(max_length=128, pattern=pattern))


def _portable(regex: re.Pattern[str]) -> str:
    # JSON Schema patterns are ECMA-262 regexes, which spell named groups differently: drop names.
    return re.sub(r"\(\?P<\w+>", "(", regex.pattern)


def _params_field(job_type: jobtypes.JobType) -> tuple[Any, Any]:
    required = any(f.is_required() for f in job_type.params.model_fields.values())
    return (job_type.params, ... if required else Field(default_factory=job_type.params))


class DatasetUpload(BaseModel):
    """The multipart form of ``POST /v1/datasets``."""

    file: Binary = Field(description="A .txt (UTF-8), a .zip of PNG/JPEG files, or an .npz.")
    name: str = Field("", description="Defaults to the file's name; cut at 128 characters.")


class DatasetPublic(BaseModel):
    """An uploaded dataset; ``size`` and ``sha256`` come with the upload's answer only."""

    id: uuid.UUID
    name: str
    kind: str = Field(description="The model kind it trains (shared.models.kinds).")
    items: int
    meta: dict[str, Any]
    created_at: datetime
    size: int | SkipJsonSchema[None] = None
    sha256: str | SkipJsonSchema[None] = None


class DatasetsPublic(BaseModel):
    """Datasets, newest first."""

    data: list[DatasetPublic]


class ModelVersionPublic(BaseModel):
    """One trained version of a model."""

    version: int
    status: str
    metrics: dict[str, Any]
    sha256: str
    artifact_url: str
    job_id: uuid.UUID | None
    created_at: datetime
    config: dict[str, Any]


class ModelPublic(BaseModel):
    """A registered model with its versions, newest first."""

    name: str
    kind: str
    created_at: datetime
    latest_version: int | None
    versions: list[ModelVersionPublic]


class ModelsPublic(BaseModel):
    """Every registered model."""

    data: list[ModelPublic]


class Health(BaseModel):
    """The answer of a probe that passed."""

    status: Literal["ok"]
    checks: dict[str, str] | SkipJsonSchema[None] = None


class WebhookAttempt(BaseModel):
    """One attempt to deliver an event: its answer or its error."""

    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookDeliveryPublic(BaseModel):
    """One event for a job's webhook, and every attempt to deliver it."""

    id: uuid.UUID = Field(description="Sent as ``webhook-id``; repeated by each retry.")
    event: WebhookEvent
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[WebhookAttempt]
    next_attempt_at: datetime | None
    created_at: datetime


class WebhookDeliveries(BaseModel):
    """A job's webhook deliveries, oldest first."""

    data: list[WebhookDeliveryPublic]


class TextChunk(BaseModel):
    """The data of a ``text`` event: the text decoded since the last one."""

    text: str


class WebhookSecret(BaseModel):
    """A new signing secret: shown this once."""

    secret: str = Field(description="``whsec_`` and base64: give it to ``shared.webhooks.verify``.")
