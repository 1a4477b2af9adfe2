"""Turns validated requests into committed, published jobs (the API's write path)."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.config import Settings
from shared.delivery.webhook_urls import check_url
from shared.errors import FieldErrors, InputError
from shared.jobs import jobtypes
from shared.jobs.schemas import JobCreate
from shared.services import Services
from shared.tables import Dataset, Job
from shared.tenants.accounts import require_webhook_secret
from shared.tenants.idempotency import Claim
from shared.tenants.keys import Principal

# Checks a job's `model` field (and params that depend on the model) against the registry.
ModelCheck = Callable[[jobtypes.JobType, str, dict[str, Any]], str]


def field_errors(exc: ValidationError, prefix: str = "") -> FieldErrors:
    """Convert a pydantic ValidationError into FieldErrors with dotted field paths."""
    errors = []
    for err in exc.errors(include_url=False, include_context=False):
        path = ".".join(str(p) for p in (*([prefix] if prefix else []), *err["loc"]))
        errors.append(
            {"field": path or prefix or "body", "message": err["msg"], "type": err["type"]}
        )
    return FieldErrors(errors)


def parse_model(schema: type[BaseModel], data: Any, prefix: str = "") -> BaseModel:
    """Validate ``data`` against ``schema`` or raise FieldErrors."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise field_errors(exc, prefix) from None


def check_webhook(services: Services, tenant_id: uuid.UUID, url: str | None) -> None:
    """Refuse (422 on ``webhook``) a URL the SSRF guard refuses, or a tenant with no secret."""
    if url is not None:
        check_url(url, services.settings)
        require_webhook_secret(services.store.sessions, tenant_id)


def build_job(body: JobCreate, *, settings: Settings, check_model: ModelCheck | None = None) -> Job:
    """Validate one job request completely and return an unsaved job row."""
    job_type = jobtypes.get(body.type)
    data = validate_params(job_type, body.params, settings)
    model = check_model_field(job_type, body.model, data, check_model)
    return Job(
        type=job_type.name,
        model=model,
        params=data,
        priority=body.priority,
        max_attempts=settings.max_attempts,
        webhook=body.webhook,
        webhook_events=body.webhook_events_filter,
    )


def validate_params(
    job_type: jobtypes.JobType, params: Any, settings: Settings, prefix: str = "params"
) -> dict[str, Any]:
    """Validate a job's params against its type's schema and limits; return them as stored."""
    parsed = parse_model(job_type.params, params, prefix)
    if job_type.memory_mb is not None:
        needed, limit = job_type.memory_mb(parsed), settings.max_train_memory_mb
        if needed > limit:
            raise InputError(
                f"this training job needs about {needed:,.0f} MiB of memory; the limit is "
                f"{limit:,} MiB (lower max_chars, max_images, batch_size or the model size)",
                field=prefix,
            )
    data = parsed.model_dump(mode="json")
    if "seed" in data and data["seed"] is None:
        # A stored seed makes every job reproducible, even when the client gave none.
        data["seed"] = secrets.randbelow(2**31)
    if len(json.dumps(data)) > settings.max_params_bytes:
        raise InputError(f"params exceed {settings.max_params_bytes} bytes", field=prefix)
    return data


def check_model_field(
    job_type: jobtypes.JobType,
    model: str | None,
    params: dict[str, Any],
    check_model: ModelCheck | None,
) -> str | None:
    if job_type.model == "none":
        if model:
            raise InputError(f"{job_type.name} takes no model", field="model")
        return None
    if job_type.model in ("required", "target") and not model:
        raise InputError(f"{job_type.name} needs a model", field="model")
    return check_model(job_type, model, params) if check_model and model else model


def submit(
    services: Services,
    jobs: Sequence[Job],
    *,
    claim: Claim | None = None,
    guard: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> list[Job]:
    """Commit jobs (with an idempotent response to keep), then publish them.

    ``guard()`` wraps the write (the API's keeps a landed commit's answer a success). A failed
    publish is left to the reconciler.
    """
    with guard():
        services.store.create(jobs, claim=claim)
    services.publisher.publish(jobs, stamped=True)
    return list(jobs)


def submission_check(services: Services, who: Principal) -> ModelCheck:
    """Return the check ``build_job`` applies to a tenant's job: its model and its dataset.

    A model or dataset the tenant may not read answers as one that does not exist; a training
    job may add versions only to the tenant's own model.
    """
    registry = services.registry

    def check(job_type: jobtypes.JobType, model: str, params: dict[str, Any]) -> str:
        if params.get("dataset_id"):
            check_dataset(services, who, params["dataset_id"], job_type.model_kind)
        if job_type.model == "target":
            return registry.check_target(model, job_type.model_kind, who.tenant_id)
        resolved = registry.resolve(model, job_type.model_kind, who)
        tokenizer = registry.tokenizer(resolved)
        if "prompt" in params and tokenizer and not tokenizer.encode(params["prompt"]):
            raise InputError(
                "the prompt has no tokens for this model's tokenizer", field="params.prompt"
            )
        return resolved.ref

    return check


def check_dataset(services: Services, who: Principal, dataset_id: str, kind: str | None) -> None:
    """Raise InputError unless the dataset exists, the tenant may read it, and its kind fits."""
    with services.store.sessions() as session:
        row = session.get(Dataset, uuid.UUID(str(dataset_id)))
    if row is None or not who.sees(row.tenant_id):
        raise InputError("dataset not found", field="params.dataset_id")
    if kind and row.kind != kind:
        raise InputError(f"dataset is {row.kind}, not {kind}", field="params.dataset_id")
