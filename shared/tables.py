"""SQLAlchemy tables: jobs, artifacts, the model registry, datasets, batches, lanes, tenants."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, UTCDateTime, utcnow

# JSONB on PostgreSQL, plain JSON text on SQLite.
JsonType = JSON().with_variant(JSONB(), "postgresql")


WAITING = "batch_id IS NOT NULL AND status = 'queued' AND published_at IS NULL"
IN_FLIGHT = "batch_id IS NOT NULL AND published_at IS NOT NULL AND status IN ('queued', 'running')"
EXPIRABLE = "batch_id IS NULL AND expired_at IS NULL AND finished_at IS NOT NULL"
NOTIFY = "webhook IS NOT NULL AND (webhook_version IS NULL OR version > webhook_version)"
NOTIFY_BATCH = "webhook IS NOT NULL AND (webhook_state IS NULL OR webhook_state <> 'ended')"


class Job(Base):
    """One unit of work (a job, or a batch's chunk); only ``shared.jobs`` writes its status."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("tenants.id")
    )  # None: system
    type: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # Bumped by every write a client can see; orders status snapshots and guards rescues.
    version: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    error: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    # One entry per attempt that did not succeed: attempt, code, message, worker, time.
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # A batch's chunk: its batch, the submit index of its first item, its items (one blob,
    # ``shared.jobs.chunks``), and once it succeeded their result lines and how many failed.
    batch_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    batch_index: Mapped[int | None] = mapped_column(Integer)
    item_count: Mapped[int | None] = mapped_column(Integer)
    items: Mapped[bytes | None] = mapped_column(LargeBinary)
    item_results: Mapped[bytes | None] = mapped_column(LargeBinary)
    items_failed: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the job's message last went to the broker; NULL while it waits to be published.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Not to be published before this time (a retry's backoff); NULL means at once.
    available_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When retention dropped its result (its row, status and timestamps stay).
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where its events go, which ones, and the row version last turned into a delivery.
    webhook: Mapped[str | None] = mapped_column(String(2048))
    webhook_events: Mapped[list[str] | None] = mapped_column(JSON)
    webhook_version: Mapped[int | None] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The running attempt must end by then, whatever its lease says.
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Run alone: set when the job was rescued from a process that died with others running.
    solo: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        # Keyset pagination, newest first, optionally filtered.
        Index("ix_jobs_created_id", "created_at", "id"),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_batch", "batch_id", "batch_index"),
        # A tenant's jobs by status: its caps, and its pages of jobs.
        Index("ix_jobs_tenant_status", "tenant_id", "status"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        # The pacer's next chunk: a tenant's batch items still waiting as rows, oldest first.
        Index(
            "ix_jobs_unpublished",
            "tenant_id",
            "created_at",
            "batch_index",
            postgresql_where=text(WAITING),
            sqlite_where=text(WAITING),
        ),
        # The pacer's count of a tenant's batch items in flight (a message out, not finished).
        Index(
            "ix_jobs_in_flight",
            "tenant_id",
            postgresql_where=text(IN_FLIGHT),
            sqlite_where=text(IN_FLIGHT),
        ),
        # The webhook dispatcher's next jobs: changed since their last delivery.
        Index(
            "ix_jobs_webhook_due", "id", postgresql_where=text(NOTIFY), sqlite_where=text(NOTIFY)
        ),
        # Retention's next page: a tenant's finished jobs (not batch items) not yet expired.
        Index(
            "ix_jobs_expiry",
            "tenant_id",
            "finished_at",
            postgresql_where=text(EXPIRABLE),
            sqlite_where=text(EXPIRABLE),
        ),
    )


class Artifact(Base):
    """A file a job produced, served by id only."""

    __tablename__ = "artifacts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("tenants.id"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    media_type: Mapped[str] = mapped_column(String(100))
    uri: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When retention deleted its file: the id then answers 410 Gone, not 404.
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Model(Base):
    """A named model in the registry; its trained weights are its versions."""

    __tablename__ = "models"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Its owner, who alone adds versions; None for the models the system trains at first start.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("tenants.id"))
    # Readable (never writable) by every tenant: the defaults, and models an admin published.
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    kind: Mapped[str] = mapped_column(String(16))  # "text" or "image"
    config: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersion(Base):
    """One trained version of a model: its file, checksum, metrics and the job that made it."""

    __tablename__ = "model_versions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="ready")
    artifact_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("artifacts.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The epochs trained when the job registered it: a job registers interim versions as it
    # trains, and a job re-run after a crash registers each of them once (the unique pair).
    job_epochs: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_version"),
        UniqueConstraint("job_id", "job_epochs", name="uq_model_version_job_epochs"),
    )


class Dataset(Base):
    """An uploaded, validated training dataset, stored in a normalized form."""

    __tablename__ = "datasets"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # "text" or "image"
    artifact_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("artifacts.id"))
    items: Mapped[int] = mapped_column(BigInteger)  # characters or images
    meta: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Batch(Base):
    """A bulk submission; its items live in chunk rows of ``jobs``, its status comes from theirs."""

    __tablename__ = "batches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("tenants.id"))
    type: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    item_count: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When retention expired it: its items' results go with it.
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    webhook: Mapped[str | None] = mapped_column(String(2048))
    webhook_events: Mapped[list[str] | None] = mapped_column(JSON)
    # What its webhook was last told ("started items-ended ended", e.g. "1 40 0"): compared
    # whole in a conditional UPDATE, so two dispatchers never tell it twice.
    webhook_state: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # The webhook dispatcher's batches: told of, and not yet told that they ended.
        Index(
            "ix_batches_webhook_due",
            "id",
            postgresql_where=text(NOTIFY_BATCH),
            sqlite_where=text(NOTIFY_BATCH),
        ),
    )


class Lane(Base):
    """A queue of the broker, and how far its consumers have read it.

    ``consumed_through`` is the latest ``published_at`` of any job claimed from the lane. The
    broker delivers a lane in order, so a queued job published well before it lost its message.
    """

    __tablename__ = "lanes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    consumed_through: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Tenant(Base):
    """An account: it owns jobs, batches, datasets, models and files; its caps and share."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Its share of the workers against other tenants' batches (1 = an equal share).
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    # Per-tenant caps; NULL takes the setting's default.
    max_running: Mapped[int | None] = mapped_column(Integer)
    max_queued: Mapped[int | None] = mapped_column(Integer)
    rate_limit: Mapped[str | None] = mapped_column(String(64))  # per key, e.g. "50/second"
    retention_days: Mapped[float | None] = mapped_column(Float)  # results and files kept
    # Signs its webhooks (Standard Webhooks, "whsec_..."): shown once, at each rotation.
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """A tenant's API key: only its SHA-256 is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in lists, to tell keys apart
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IdempotentResponse(Base):
    """The response to a request sent with an ``Idempotency-Key``, replayed for 24 hours."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WebhookDelivery(Base):
    """One event of a job or batch for its webhook, with every attempt to deliver it."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("tenants.id"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    batch_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    event: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # delivered, failed
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # When the next attempt is due; a dispatcher that takes it moves this past its timeout.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )
