"""The model registry: named models, their trained versions, and how jobs refer to them.

A job names a model as ``name`` (the latest ready version) or ``name:version``. The API resolves
the name when the job is submitted and stores ``name:version``, so a job keeps the version it was
accepted with even if a newer one is registered while it waits.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import Conflict, InputError, ModelNotReady, NotFound
from shared.models.tokenizers import Tokenizer
from shared.tables import Job, Model, ModelVersion
from shared.tenants.keys import Principal

# How stale a cached "latest version" may be: short where no announcement can arrive, and a
# backstop where new versions are announced over Redis.
LATEST_TTL_S = 2.0
ANNOUNCED_LATEST_TTL_S = 60.0
# A pinned ``name:version`` never changes, but who may read it does (an admin publishes a model).
PINNED_TTL_S = ANNOUNCED_LATEST_TTL_S
CACHE_ENTRIES = 10_000
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
REF_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_.-]{0,63})(?::(?P<version>[1-9][0-9]{0,8}))?$")


@dataclass(frozen=True)
class ResolvedModel:
    """A model version ready to run, with what a worker needs to load it."""

    name: str
    kind: str
    version: int
    artifact_id: uuid.UUID
    sha256: str
    config: dict[str, Any]
    tenant_id: uuid.UUID | None = None  # its owner; None for the system's models
    shared: bool = True

    @property
    def ref(self) -> str:
        """Return ``name:version``."""
        return f"{self.name}:{self.version}"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``name[:version]``; raise InputError on a malformed reference."""
    match = REF_RE.fullmatch(ref or "")  # fullmatch: "$" alone would let "name\n" through
    if not match:
        raise InputError(f"model must look like 'name' or 'name:3', got {ref!r}", field="model")
    version = match.group("version")
    return match.group("name"), int(version) if version else None


class ModelRegistry:
    """Reads and writes the ``models`` and ``model_versions`` tables."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        latest_ttl_s: float = LATEST_TTL_S,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.latest_ttl_s = latest_ttl_s
        self.on_change = on_change  # tells other processes a new version exists
        self._resolved: dict[tuple[str, str | None], tuple[ResolvedModel, float]] = {}
        self._tokenizers: dict[tuple[str, int], Tokenizer | None] = {}

    def resolve(
        self, ref: str, kind: str | None = None, viewer: Principal | None = None
    ) -> ResolvedModel:
        """Return the version a reference names; ModelNotReady while its first version trains.

        With a ``viewer``, a model it may not read answers as one that does not exist. Answers
        come from a per-process cache: ``name`` (the latest version) is kept for
        ``latest_ttl_s`` or until a change is announced, ``name:version`` for ``PINNED_TTL_S``.
        """
        name, _ = parse_ref(ref)
        hit = self._resolved.get((ref, kind))
        if hit is not None and hit[1] > time.monotonic():
            resolved: ResolvedModel | None = hit[0]
        else:
            resolved = self._resolve(name, ref, kind)
        if resolved is None or (viewer and not viewer.sees(resolved.tenant_id, resolved.shared)):
            self._raise_missing(name, viewer)
        assert resolved is not None
        ttl = PINNED_TTL_S if ":" in ref else self.latest_ttl_s
        if len(self._resolved) >= CACHE_ENTRIES:
            self._resolved.clear()
        self._resolved[(ref, kind)] = (resolved, time.monotonic() + ttl)
        return resolved

    def forget_latest(self) -> None:
        """Drop every cached answer: a version was registered, or a model published."""
        self._resolved.clear()

    def tokenizer(self, resolved: ResolvedModel) -> Tokenizer | None:
        """Return the tokenizer saved with a text model's version (built once per process)."""
        key = (resolved.name, resolved.version)
        if key not in self._tokenizers:
            data = resolved.config.get("tokenizer")
            self._tokenizers[key] = Tokenizer.from_json(data) if data else None
        return self._tokenizers[key]

    def _resolve(self, name: str, ref: str, kind: str | None) -> ResolvedModel | None:
        _, version = parse_ref(ref)
        with self.sessions() as session:
            model = session.scalar(select(Model).where(Model.name == name))
            if model is None:
                return None
            if kind and model.kind != kind:
                raise InputError(
                    f"model {name!r} is a {model.kind} model, not {kind}", field="model"
                )
            stmt = select(ModelVersion).where(
                ModelVersion.model_id == model.id, ModelVersion.status == "ready"
            )
            stmt = (
                stmt.where(ModelVersion.version == version)
                if version
                else stmt.order_by(ModelVersion.version.desc()).limit(1)
            )
            row = session.scalar(stmt)
        if row is None:
            raise InputError(f"model {name!r} has no version {version}", field="model")
        return _resolved(model, row)

    def _raise_missing(self, name: str, viewer: Principal | None) -> None:
        """Raise ModelNotReady if the viewer's own first version of it trains, else unknown."""
        stmt = (
            select(func.count())
            .select_from(Job)
            .where(
                Job.model == name, Job.type.like("%.train"), Job.status.in_(("queued", "running"))
            )
        )
        if viewer is not None and not viewer.is_admin:
            stmt = stmt.where(Job.tenant_id == viewer.tenant_id)
        with self.sessions() as session:
            training = session.scalar(stmt)
        if training:
            raise ModelNotReady(
                f"model {name!r} is still training; try again when its training job has succeeded",
                field="model",
            )
        raise InputError(f"unknown model {name!r}", field="model")

    def check_target(self, name: str, kind: str, tenant_id: uuid.UUID | None = None) -> str:
        """Validate the name a training job of ``tenant_id`` will register its version under."""
        if not NAME_RE.fullmatch(name or ""):
            raise InputError("model name must be 1-64 of a-z, 0-9, '_', '.', '-'", field="model")
        with self.sessions() as session:
            existing = session.scalar(select(Model).where(Model.name == name))
        if existing is not None:
            _check_owner(existing, tenant_id)
            if existing.kind != kind:
                raise InputError(
                    f"model {name!r} already exists as a {existing.kind} model", field="model"
                )
        return name

    def register(
        self,
        *,
        name: str,
        kind: str,
        config: dict[str, Any],
        artifact_id: uuid.UUID,
        sha256: str,
        metrics: dict[str, Any],
        job_id: uuid.UUID | None,
        tenant_id: uuid.UUID | None = None,
        job_epochs: int = 0,
    ) -> ResolvedModel:
        """Add a ready version (numbered max + 1) to the tenant's own model, created if new.

        A job registers at most one version per count of epochs trained. A model created by the
        system (``tenant_id`` None) is shared; one created by a tenant stays private until an
        admin publishes it.
        """
        for _ in range(5):
            try:
                done = self._register_once(
                    name,
                    kind,
                    config,
                    artifact_id,
                    sha256,
                    metrics,
                    (job_id, job_epochs),
                    tenant_id,
                )
            except IntegrityError:
                continue  # another trainer took the same number or created the model first
            self.forget_latest()
            if self.on_change is not None:
                self.on_change()
            return done
        raise RuntimeError(f"could not register a version of {name!r}")

    def _register_once(
        self,
        name: str,
        kind: str,
        config: dict[str, Any],
        artifact_id: uuid.UUID,
        sha256: str,
        metrics: dict[str, Any],
        by_job: tuple[uuid.UUID | None, int],
        tenant_id: uuid.UUID | None,
    ) -> ResolvedModel:
        job_id, job_epochs = by_job
        with self.sessions() as session:
            done = None
            if job_id is not None:
                done = session.scalar(
                    select(ModelVersion).where(
                        ModelVersion.job_id == job_id, ModelVersion.job_epochs == job_epochs
                    )
                )
            model = session.scalar(select(Model).where(Model.name == name))
            if done is None:
                if model is None:
                    model = Model(
                        name=name, kind=kind, config={}, tenant_id=tenant_id, shared=not tenant_id
                    )
                    session.add(model)
                    session.flush()
                _check_owner(model, tenant_id)  # another tenant took the name since the submit
                last = session.scalar(
                    select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
                )
                done = ModelVersion(
                    model_id=model.id,
                    version=(last or 0) + 1,
                    artifact_id=artifact_id,
                    sha256=sha256,
                    config=config,
                    metrics=metrics,
                    job_id=job_id,
                    job_epochs=job_epochs if job_id is not None else None,
                    status="ready",
                )
                session.add(done)
                session.commit()
            assert model is not None
            return _resolved(model, done)

    def list_models(self, viewer: Principal, name: str | None = None) -> list[dict[str, Any]]:
        """Return the models the viewer may read (or the one called ``name``), with versions."""
        stmt = select(Model).order_by(Model.name)
        if name is not None:
            stmt = stmt.where(Model.name == name)
        if not viewer.is_admin:
            stmt = stmt.where(Model.shared | (Model.tenant_id == viewer.tenant_id))
        with self.sessions() as session:
            models = list(session.scalars(stmt))
            versions = list(
                session.scalars(
                    select(ModelVersion)
                    .where(ModelVersion.model_id.in_([m.id for m in models]))
                    .order_by(ModelVersion.version.desc())
                )
            )
        by_model: dict[uuid.UUID, list[ModelVersion]] = {}
        for v in versions:
            by_model.setdefault(v.model_id, []).append(v)
        return [model_public(m, by_model.get(m.id, [])) for m in models]

    def get_model(self, name: str, viewer: Principal) -> dict[str, Any]:
        """Return one model the viewer may read, with its versions; NotFound otherwise."""
        found = self.list_models(viewer, name)
        if not found:
            raise NotFound(f"model {name!r} not found")
        return found[0]

    def set_shared(self, name: str, shared: bool) -> None:
        """Publish a model to every tenant (read-only), or make it private to its owner again."""
        with self.sessions() as session:
            model = session.scalar(select(Model).where(Model.name == name))
            if model is None:
                raise NotFound(f"model {name!r} not found")
            if model.tenant_id is None and not shared:
                raise Conflict(f"model {name!r} is a system model; it stays shared")
            model.shared = shared
            session.commit()
        self.forget_latest()
        if self.on_change is not None:
            self.on_change()

    def shares_file(self, artifact_id: uuid.UUID) -> bool:
        """Return whether an artifact is a version of a shared model (readable by all)."""
        with self.sessions() as session:
            return bool(
                session.scalar(
                    select(func.count())
                    .select_from(ModelVersion)
                    .join(Model)
                    .where(ModelVersion.artifact_id == artifact_id, Model.shared)
                )
            )

    def is_empty(self) -> bool:
        """Return whether no model has been registered yet."""
        with self.sessions() as session:
            return not session.scalar(select(func.count()).select_from(Model))


def model_public(model: Model, versions: list[ModelVersion]) -> dict[str, Any]:
    """Return the client view of a model and its versions."""
    return {
        "name": model.name,
        "kind": model.kind,
        "shared": model.shared,
        "created_at": model.created_at.isoformat(),
        "latest_version": versions[0].version if versions else None,
        "versions": [
            {
                "version": v.version,
                "status": v.status,
                "metrics": v.metrics,
                "sha256": v.sha256,
                "artifact_url": f"/v1/artifacts/{v.artifact_id}",
                "job_id": str(v.job_id) if v.job_id else None,
                "created_at": v.created_at.isoformat(),
                "config": {k: val for k, val in v.config.items() if k != "tokenizer"},
            }
            for v in versions
        ],
    }


def _resolved(model: Model, row: ModelVersion) -> ResolvedModel:
    return ResolvedModel(
        model.name,
        model.kind,
        row.version,
        row.artifact_id,
        row.sha256,
        row.config,
        model.tenant_id,
        model.shared,
    )


def _check_owner(model: Model, tenant_id: uuid.UUID | None) -> None:
    """Raise Conflict unless ``tenant_id`` owns the model: only its owner adds versions."""
    if model.tenant_id == tenant_id:
        return
    if model.tenant_id is None:
        raise Conflict(f"model {model.name!r} is a shared system model", field="model")
    # Names are global, so a taken name is refused; the answer does not say whose it is.
    raise Conflict(f"the model name {model.name!r} is taken; choose another", field="model")
