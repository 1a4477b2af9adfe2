"""The one settings object. No other module reads ``os.environ``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

VAR_DIR = Path("var")
BrokerKind = Literal["filesystem", "redis", "amqp", "sqlalchemy"]
# kombu's URL schemes of the brokers aigc-queue runs on; sqla+<database URL> is the SQLAlchemy one.
BROKER_SCHEMES: dict[str, BrokerKind] = {
    "filesystem": "filesystem",
    "redis": "redis",
    "rediss": "redis",
    "amqp": "amqp",
}


class Settings(BaseSettings):
    """Every knob of aigc-queue, read from ``AIGC_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="AIGC_", extra="ignore")

    # Where things live.
    database_url: str = f"sqlite:///{VAR_DIR}/aigc.sqlite3"
    # kombu's filesystem transport: no server, polls a folder (see broker_dir).
    broker_url: str = "filesystem://"
    broker_dir: Path = VAR_DIR / "broker"
    redis_url: str | None = None
    artifact_dir: Path = Field(
        VAR_DIR / "artifacts",
        description="This host's artifact folder: the store itself unless artifact_url names "
        "another; always the scratch of jobs' checkpoints and the cache of stored model files.",
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = Field(2, ge=1, le=64, description="gunicorn worker processes.")
    api_connections: int = Field(
        1000, ge=10, le=100_000, description="Open requests per API process (gevent workers)."
    )
    # The URL clients (the CLI) use to reach the API; defaults to host:port above.
    api_url: str | None = None

    # How much database work an API process takes on at once: it holds this many connections
    # (plus one for its own background reads) and admits this many requests at a time; the
    # rest wait up to api_admit_wait_s for a slot, then get 503 with Retry-After. Long polls and
    # event streams hold no slot while they wait. Size the fleet so that
    # api_workers * (api_db_connections + 1) + every Celery worker's pool fits under
    # PostgreSQL's max_connections.
    api_db_connections: int = Field(
        10, ge=1, le=200, description="Requests each API process serves at once (= its pool)."
    )
    api_admit_wait_s: float = Field(
        2.0, gt=0, le=60, description="How long a request waits for a slot before its 503."
    )
    # Connections per Celery worker process; keep the sum of all processes under PostgreSQL's
    # max_connections.
    db_pool_size: int = Field(5, ge=1, le=200)
    db_max_overflow: int = Field(10, ge=0, le=200)

    # Database connections: every wait on the database has a deadline.
    db_connect_timeout_s: float = Field(3.0, gt=0, le=60)
    db_statement_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Server-side limit on one statement (PostgreSQL)."
    )
    # Detects a peer that vanished (cut cable, dead host) on PostgreSQL connections.
    db_tcp_user_timeout_s: float = Field(10.0, gt=0, le=600)
    # Seconds a pooled connection lives; replaces a ping on every checkout.
    db_pool_recycle_s: float = Field(300.0, gt=0)
    api_request_timeout_s: float = Field(
        4.0, gt=0, le=600, description="Deadline of an API request (waits excepted)."
    )
    api_upload_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="Deadline of a batch or dataset upload."
    )
    sse_heartbeat_s: float = Field(
        15.0, gt=0, le=300, description="Idle seconds before an event stream sends a comment."
    )
    sse_max_s: float = Field(
        3600.0, gt=0, description="An event stream ends after this; clients resume by id."
    )

    # Artifact storage: a folder (file:///abs/path) or S3-compatible storage (s3://bucket/prefix).
    artifact_url: str | None = Field(
        None, description="Where artifacts are stored; default: the folder artifact_dir."
    )
    s3_endpoint_url: str | None = Field(
        None, description="An S3-compatible server (MinIO, say); default: AWS S3 itself."
    )
    s3_public_endpoint_url: str | None = Field(
        None, description="The endpoint as clients reach it, for presigned URLs; default: above."
    )
    s3_region: str = "us-east-1"
    # Without a key pair, boto3's own chain applies (environment, instance profile).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    artifact_serve: Literal["stream", "redirect"] = Field(
        "stream",
        description="stream: the API relays the file; redirect: a 307 to a presigned URL (S3).",
    )
    artifact_presign_ttl_s: int = Field(
        300, ge=1, le=604_800, description="Seconds a presigned URL works (SigV4: 7 days at most)."
    )
    artifact_cache_mb: int = Field(
        10_240, ge=1, description="Local copies of stored model and dataset files a host keeps."
    )

    # Delivery.
    lease_s: float = Field(30.0, gt=0, description="Seconds a running job's lease lasts.")
    heartbeat_s: float = Field(10.0, gt=0, description="Seconds between lease renewals.")
    cancel_poll_s: float = Field(
        0.25, gt=0, description="How often a worker without Redis reads its jobs' cancel flags."
    )
    republish_after_s: float = Field(
        60.0, gt=0, description="A queued job's message presumed lost after this long."
    )
    reconcile_interval_s: float = Field(5.0, gt=0)
    retention_days: float = Field(
        7.0, gt=0, description="Days a job's result and files are kept (default per tenant)."
    )
    retention_sweep_s: float = Field(
        300.0, gt=0, description="Seconds between the reconciler's retention sweeps."
    )
    orphan_grace_s: float = Field(
        86_400.0, gt=0, description="A file no row claims is removed once this old."
    )
    gc_page: int = Field(500, ge=1, le=10_000, description="Rows per page of a retention sweep.")
    max_attempts: int = Field(3, ge=1, le=20)
    retry_backoff_s: float = Field(2.0, gt=0, description="First retry delay; doubles each time.")
    retry_backoff_max_s: float = Field(600.0, gt=0)
    generate_time_limit_s: int = Field(600, gt=0)
    train_time_limit_s: int = Field(6 * 3600, gt=0)
    # A job thread still busy this long after its job timed out is counted as stuck.
    stuck_grace_s: float = Field(30.0, gt=0)
    publish_timeout_s: float = Field(3.0, gt=0)
    status_cache_ttl_s: int = Field(300, gt=0)
    broker_poll_interval_s: float = Field(0.2, gt=0)

    # Training guard: the memory a training job may need, estimated from its preset and params.
    max_train_memory_mb: int = Field(8192, ge=64)

    # The process supervisor behind `aigc up`: restarts a crashed child after a backoff.
    restart_backoff_s: float = Field(1.0, gt=0)
    restart_backoff_max_s: float = Field(30.0, gt=0)
    stop_grace_s: float = Field(
        15.0,
        gt=0,
        description="Seconds a stopped process has between SIGTERM and SIGKILL; a worker hands "
        "back the jobs it cannot finish before then.",
    )

    # Tenants: keys, caps, rate limits, idempotency.
    auth_required: bool = Field(
        True, description="Every request needs a key; off only for benchmarks on one machine."
    )
    tenant_max_running: int = Field(
        256, ge=1, description="Running interactive jobs per tenant (default; batches: window)."
    )
    tenant_max_queued: int = Field(
        2_000_000, ge=1, description="Queued jobs and batch items per tenant (default)."
    )
    rate_limit: str = Field(
        "200/second", description="Requests per key (flask-limiter syntax, ';' separates)."
    )
    rate_limit_storage_url: str | None = Field(
        None, description="Where rate-limit counters live; default: redis_url, else memory."
    )
    idempotency_ttl_s: int = Field(24 * 3600, gt=0)
    # The key the CLI sends; without one, the local admin key that `aigc up` writes to the file.
    api_key: SecretStr | None = None
    api_key_file: Path = VAR_DIR / "admin.key"

    # Request limits.
    max_body_bytes: int = 1024 * 1024
    max_params_bytes: int = 64 * 1024
    page_limit_max: int = 100
    max_dataset_bytes: int = 200 * 1024 * 1024

    # Models.
    model_cache_size: int = Field(4, ge=1, le=64, description="Models a worker keeps loaded.")
    warm_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    default_text_model: str = "text-default"
    default_image_model: str = "image-default"
    # The default models of other kinds (shared.models.kinds), "kind=name,..."; one named here
    # wins over the two above.
    default_models: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    # Batches and dynamic batching.
    # A batch is stored, claimed and committed a chunk at a time; by default a chunk fills one
    # forward pass, so a deployment on an accelerator sets AIGC_GENERATE_MAX_BATCH alone.
    batch_chunk_size: int = Field(
        0, ge=0, le=8192, description="Items per chunk (0: generate_max_batch)."
    )
    batch_window_items: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="A tenant's batch items in the broker or running at once, times its "
        "weight (0: 4 chunks).",
    )
    batch_max_items: int = Field(1_000_000, ge=1, description="Items per batch (JSONL upload).")
    batch_max_bytes: int = Field(1024**3, ge=1024, description="Bytes per JSONL upload.")
    generate_max_batch: int = Field(64, ge=1, le=8192, description="Rows per forward pass.")
    generate_max_wait_ms: float = Field(2.0, ge=0, le=1000)
    decode_chunk_steps: int = Field(16, ge=1, le=1024, description="Steps between joins.")
    generate_batching: bool = True

    # Import Keras in the background when a worker (child) starts, before its first job.
    warmup_imports: bool = True

    # GPU workers.
    gpu_memory_growth: bool = Field(True, description="Allocate GPU memory on demand.")

    # Observability: Prometheus metrics, the fleet's announcements, and the log format.
    metrics_port: int = Field(
        0,
        ge=0,
        le=65_535,
        description="A worker's (or the reconciler's) metrics port; in `aigc up`, the first of "
        "three (generate, train, reconciler). 0: no metrics endpoint. The API serves /metrics.",
    )
    metrics_host: str = Field("127.0.0.1", description="Where metrics endpoints listen.")
    metrics_dir: Path = Field(
        VAR_DIR / "metrics",
        description="Each process's metric files (a folder per process), and without Redis the "
        "workers' announcements.",
    )
    # prometheus_client's multiprocess folder, which it reads itself: the launcher sets it for
    # each process whose children share one set of metrics (gunicorn, Celery's prefork).
    process_metrics_dir: Path | None = Field(None, validation_alias="PROMETHEUS_MULTIPROC_DIR")
    log_format: Literal["text", "json"] = Field(
        "text", description="json: every process writes one JSON object per log line."
    )

    # Worker process.
    worker_concurrency: int = Field(1, ge=1, le=64)
    generate_threads: int = Field(16, ge=1, le=512, description="Job threads of a generate worker.")
    worker_queues: str = "generate,train"
    # Extra modules that register job types (tests register theirs this way).
    plugins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Webhooks.
    webhook_allow_http: bool = Field(False, description="Accept http:// webhook URLs too.")
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts or addresses exempt from the SSRF guard."
    )
    webhook_timeout_s: float = Field(5.0, gt=0, le=30, description="Connect and read timeout.")
    webhook_max_response_bytes: int = Field(65_536, ge=0, description="Read of an answer, at most.")
    webhook_backoff_s: float = Field(5.0, gt=0, description="Wait before the first retry.")
    webhook_retry_for_s: float = Field(3600.0, gt=0, description="Retries stop after this.")
    webhook_poll_s: float = Field(1.0, gt=0, description="How often the dispatcher looks.")

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        parse_many(value)  # a ValueError names what is wrong
        return value

    @field_validator("plugins", "warm_models", "webhook_allow_hosts", mode="before")
    @classmethod
    def _split_plugins(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("default_models", mode="before")
    @classmethod
    def _split_default_models(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("default_models: write kind=name pairs, separated by commas")
        return {kind.strip(): name.strip() for kind, name in pairs}

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        broker_kind_of(value)  # a ValueError names the brokers we run on
        return value

    @field_validator("artifact_url")
    @classmethod
    def _check_artifact_url(cls, value: str | None) -> str | None:
        if value is not None:
            split_artifact_url(value)  # a ValueError names what is wrong
        return value

    @model_validator(mode="after")
    def _check_storage(self) -> Settings:
        scheme = split_artifact_url(self.artifact_url)[0] if self.artifact_url else "file"
        if self.artifact_serve == "redirect" and scheme != "s3":
            raise ValueError("artifact_serve=redirect needs an s3:// artifact_url")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both s3_access_key_id and s3_secret_access_key, or neither")
        return self

    @model_validator(mode="after")
    def _size_chunks(self) -> Settings:
        if not self.batch_chunk_size:
            self.batch_chunk_size = self.generate_max_batch
        if not self.batch_window_items:
            self.batch_window_items = 4 * self.batch_chunk_size
        return self

    @model_validator(mode="after")
    def _check_timing(self) -> Settings:
        # A lease must survive one missed heartbeat, or a busy database would rescue live jobs.
        if self.heartbeat_s * 2 > self.lease_s:
            raise ValueError("heartbeat_s must be at most half of lease_s")
        # A request waiting for its slot longer than its deadline would never get its own 503.
        if self.api_admit_wait_s >= self.api_request_timeout_s:
            raise ValueError("api_admit_wait_s must be below api_request_timeout_s")
        if self.retry_backoff_s > self.retry_backoff_max_s:
            raise ValueError("retry_backoff_s must not exceed retry_backoff_max_s")
        if self.restart_backoff_s > self.restart_backoff_max_s:
            raise ValueError("restart_backoff_s must not exceed restart_backoff_max_s")
        return self

    @property
    def public_api_url(self) -> str:
        """Return the base URL at which clients reach the API."""
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def broker_kind(self) -> BrokerKind:
        """Return which broker ``broker_url`` names, by its scheme."""
        return broker_kind_of(self.broker_url)

    @property
    def is_embedded(self) -> bool:
        """Return whether the broker needs no server (single-machine mode)."""
        return self.broker_kind in ("filesystem", "sqlalchemy")

    def ensure_dirs(self) -> None:
        """Create the local folders the embedded defaults write to."""
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        if self.broker_kind == "filesystem":
            for sub in ("queue", "control"):
                (self.broker_dir / sub).mkdir(parents=True, exist_ok=True)
        for url in (self.database_url, self.broker_url):
            if url.startswith(("sqlite:///", "sqla+sqlite:///")):
                Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)


def broker_kind_of(url: str) -> BrokerKind:
    """Return the kind of broker a URL names; a ValueError for one aigc-queue does not run on."""
    scheme = url.partition("://")[0]
    if scheme.startswith("sqla+"):
        return "sqlalchemy"
    if scheme not in BROKER_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in BROKER_SCHEMES)
        raise ValueError(f"broker_url must be {schemes} or sqla+<database URL>")
    return BROKER_SCHEMES[scheme]


def split_artifact_url(url: str) -> tuple[str, str, str]:
    """Split an artifact URL into (scheme, bucket, path): ``file`` and a folder, or ``s3``, a
    bucket and a key prefix; a ValueError says what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError("artifact_url: file:///absolute/folder (three slashes, no host)")
        return "file", "", parts.path
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("artifact_url: s3://bucket/prefix needs a bucket")
        prefix = parts.path.strip("/")
        if ".." in prefix.split("/") or parts.query or parts.fragment:
            raise ValueError("artifact_url: an s3 prefix is a plain path")
        return "s3", parts.netloc, prefix
    raise ValueError("artifact_url must be file:///folder or s3://bucket/prefix")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
