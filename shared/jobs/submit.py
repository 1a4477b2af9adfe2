"""Turns validated requests into committed, published jobs (the API's write path).

``accept`` is the one orchestration of a submit, for a job (``job_submission``) as for a batch
(``shared.jobs.batches.batch_submission``): the request is validated once as its submission is
built; then the webhook check, the tenant's queued cap, one insert that keeps the idempotent
answer in its transaction (where ``new_row`` fills a job's defaults, once), and the release to
the broker each run once. The worker trusts the stored params.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.config import Settings
from shared.errors import FieldErrors, InputError
from shared.jobs import jobtypes
from shared.jobs.caps import check_queued_cap
from shared.jobs.schemas import JobCreate
from shared.jobs.store import JobStore
from shared.jobs.webhook_urls import check_url
from shared.models.registry import ModelRegistry
from shared.tables import Batch, Dataset, Job
from shared.tenants.accounts import require_webhook_secret
from shared.tenants.keys import Principal
from shared.types import Claim, Publisher, Sessions, WriteGuard

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


def check_webhook(
    sessions: Sessions, settings: Settings, tenant_id: uuid.UUID, url: str | None
) -> None:
    """Refuse (422 on ``webhook``) a URL the SSRF guard refuses, or a tenant with no secret."""
    if url is not None:
        check_url(url, settings)
        require_webhook_secret(sessions, tenant_id)


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


# What a submit answers, from what it creates: the idempotency claim with that response.
Answer = Callable[[Job | Batch], Claim | None]


@dataclass(frozen=True)
class Submission:
    """A validated submit: what it creates, and how that is stored and released once checked."""

    subject: Job | Batch  # what the answer describes
    count: int  # the jobs it adds to the tenant's queue
    webhook: str | None
    write: Callable[[Callable[[], Claim | None]], object]  # one transaction, with the claim
    release: Callable[[], object]  # to the broker, after the commit


def accept(
    submission: Submission,
    *,
    who: Principal,
    sessions: Sessions,
    settings: Settings,
    answer: Answer,
    guard: WriteGuard = nullcontext,
) -> Job | Batch:
    """Check, store and release a validated submission; return what it created.

    ``guard()`` wraps the write (the API's keeps a landed commit's answer a success). A failed
    publish is left to the reconciler.
    """
    check_webhook(sessions, settings, who.tenant_id, submission.webhook)
    check_queued_cap(
        sessions, who.tenant_id, submission.count, default_cap=settings.tenant_max_queued
    )
    with guard():
        submission.write(lambda: answer(submission.subject))
    submission.release()
    return submission.subject


def job_submission(
    body: JobCreate,
    *,
    who: Principal,
    settings: Settings,
    check_model: ModelCheck | None,
    store: JobStore,
    publisher: Publisher,
) -> Submission:
    """Validate one job request completely and return its submission."""
    job = build_job(body, settings=settings, check_model=check_model)
    job.tenant_id = who.tenant_id
    return Submission(
        job,
        1,
        job.webhook,
        write=lambda answer: store.create([job], answer=answer),
        release=lambda: publisher.publish([job], stamped=True),
    )


def submit(store: JobStore, publisher: Publisher, jobs: Sequence[Job]) -> list[Job]:
    """Commit the system's own jobs (no tenant, no checks: the bootstrap's), then publish them."""
    store.create(jobs)
    publisher.publish(jobs, stamped=True)
    return list(jobs)


def submission_check(registry: ModelRegistry, sessions: Sessions, who: Principal) -> ModelCheck:
    """Return the check ``build_job`` applies to a tenant's job: its model and its dataset.

    A model or dataset the tenant may not read answers as one that does not exist; a training
    job may add versions only to the tenant's own model.
    """

    def check(job_type: jobtypes.JobType, model: str, params: dict[str, Any]) -> str:
        if params.get("dataset_id"):
            check_dataset(sessions, who, params["dataset_id"], job_type.model_kind)
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


def check_dataset(sessions: Sessions, who: Principal, dataset_id: str, kind: str | None) -> None:
    """Raise InputError unless the dataset exists, the tenant may read it, and its kind fits."""
    with sessions() as session:
        row = session.get(Dataset, uuid.UUID(str(dataset_id)))
    if row is None or not who.sees(row.tenant_id):
        raise InputError("dataset not found", field="params.dataset_id")
    if kind and row.kind != kind:
        raise InputError(f"dataset is {row.kind}, not {kind}", field="params.dataset_id")
