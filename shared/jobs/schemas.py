"""Pydantic schemas of the HTTP API: the ``JobCreate`` / ``JobPublic`` / ``JobsPublic`` family."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from shared.jobs.numbers import Float, Int
from shared.jobs.status import JobStatus


class Strict(BaseModel):
    """A request body that rejects unknown fields."""

    model_config = ConfigDict(extra="forbid")


WebhookEvent = Literal["start", "progress", "completed"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = get_args(WebhookEvent)
DEFAULT_WEBHOOK_EVENTS: list[WebhookEvent] = ["completed"]  # for a request that names none
# The events as the API's descriptions list them, the default marked.
WEBHOOK_EVENTS_DOC = ", ".join(
    f"{e} (default)" if e in DEFAULT_WEBHOOK_EVENTS else e for e in WEBHOOK_EVENTS
)


class WebhookRequest(Strict):
    """Where a job's or batch's events go (``POST /v1/jobs`` and ``POST /v1/batches``)."""

    webhook: str | None = Field(
        None,
        max_length=2048,
        description="An https URL that gets the events, signed (Standard Webhooks).",
    )
    webhook_events_filter: list[WebhookEvent] | None = Field(
        None, max_length=len(WEBHOOK_EVENTS), description=f"Which events: {WEBHOOK_EVENTS_DOC}."
    )


class JobCreate(WebhookRequest):
    """Body of ``POST /v1/jobs``."""

    type: str = Field(min_length=1, max_length=64, examples=["text.generate"])
    model: str | None = Field(
        None,
        max_length=128,
        description="Model `name` or `name:version`; for training jobs, "
        "the name the trained model is registered under.",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    priority: Int = Field(0, ge=0, le=9)


class JobError(BaseModel):
    """Why a job failed: a stable code and a message for people."""

    code: str
    message: str


class AttemptError(JobError):
    """How one attempt of a job ended without success."""

    attempt: int
    worker: str | None = None
    at: datetime
    charged: bool | None = Field(
        None,
        description="For a lost worker: whether the attempt counted (false when the job died "
        "beside others and runs alone next).",
    )


class JobPublic(BaseModel):
    """A job as clients see it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: uuid.UUID | None = Field(None, description="The owner; None for system jobs.")
    type: str
    model: str | None
    params: dict[str, Any]
    status: str
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None
    errors: list[AttemptError] = Field(
        default_factory=list, description="One entry per attempt that did not succeed."
    )
    attempts: int
    max_attempts: int
    priority: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expired_at: datetime | None = Field(
        None, description="When retention dropped its result and files (status and times stay)."
    )

    @field_validator("errors", mode="before")
    @classmethod
    def _no_errors_yet(cls, value: object) -> object:
        return value or []


class JobsPublic(BaseModel):
    """A page of jobs, newest first."""

    data: list[JobPublic]
    next_cursor: str | None


class JobQuery(Strict):
    """Query string of ``GET /v1/jobs/{id}``."""

    wait_s: Float = Field(
        0,
        ge=0,
        le=60,
        description="Long-poll: wait up to this long for the job to end before answering.",
    )


class JobsQuery(Strict):
    """Query string of ``GET /v1/jobs``."""

    status: JobStatus | None = None
    type: str | None = Field(None, max_length=64)
    limit: Int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=200)


class ModelUpdate(Strict):
    """Body of ``PATCH /v1/models/{name}`` (admin scope)."""

    shared: StrictBool = Field(
        description="True publishes the model to every tenant, read-only; false makes it "
        "private to its owner again."
    )


class ArtifactPublic(BaseModel):
    """A stored file a job produced."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    job_id: uuid.UUID | None
    kind: str
    media_type: str
    size: int
    sha256: str
    url: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None
