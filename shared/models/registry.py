"""The model registry: named models, their trained versions, and how jobs refer to them.

A job names a model as ``name`` (the latest ready version) or ``name:version``. The API resolves
the name when the job is submitted and stores ``name:version``, so a job keeps the version it was
accepted with even if a newer one is registered while it waits.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import InputError, ModelNotReady
from shared.models.tokenizers import Tokenizer
from shared.tables import Job, Model, ModelVersion

# How stale a cached "latest version" may be: short where no announcement can arrive, and a
# backstop where new versions are announced over Redis.
LATEST_TTL_S = 2.0
ANNOUNCED_LATEST_TTL_S = 60.0
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

    def resolve(self, ref: str, kind: str | None = None) -> ResolvedModel:
        """Return the version a reference names; ModelNotReady while its first version trains.

        Answers come from a per-process cache: ``name:version`` never changes, and ``name`` (the
        latest version) is kept for ``latest_ttl_s`` or until a new version is announced.
        """
        hit = self._resolved.get((ref, kind))
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        resolved = self._resolve(ref, kind)
        ttl = math.inf if ":" in ref else self.latest_ttl_s
        if len(self._resolved) >= CACHE_ENTRIES:
            self._resolved.clear()
        self._resolved[(ref, kind)] = (resolved, time.monotonic() + ttl)
        return resolved

    def forget_latest(self) -> None:
        """Drop cached answers for ``name`` references: a new version was registered."""
        for key in [k for k in self._resolved if ":" not in k[0]]:
            self._resolved.pop(key, None)

    def tokenizer(self, resolved: ResolvedModel) -> Tokenizer | None:
        """Return the tokenizer saved with a text model's version (built once per process)."""
        key = (resolved.name, resolved.version)
        if key not in self._tokenizers:
            data = resolved.config.get("tokenizer")
            self._tokenizers[key] = Tokenizer.from_json(data) if data else None
        return self._tokenizers[key]

    def _resolve(self, ref: str, kind: str | None) -> ResolvedModel:
        name, version = parse_ref(ref)
        with self.sessions() as session:
            model = session.scalar(select(Model).where(Model.name == name))
            if model is None:
                self._raise_missing(session, name)
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
        return ResolvedModel(name, model.kind, row.version, row.artifact_id, row.sha256, row.config)

    @staticmethod
    def _raise_missing(session: Session, name: str) -> None:
        training = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.model == name, Job.type.like("%.train"), Job.status.in_(("queued", "running"))
            )
        )
        if training:
            raise ModelNotReady(
                f"model {name!r} is still training; try again when its training job has succeeded",
                field="model",
            )
        raise InputError(f"unknown model {name!r}", field="model")

    def check_target(self, name: str, kind: str) -> str:
        """Validate the name a training job will register its model under."""
        if not NAME_RE.fullmatch(name or ""):
            raise InputError("model name must be 1-64 of a-z, 0-9, '_', '.', '-'", field="model")
        with self.sessions() as session:
            existing = session.scalar(select(Model.kind).where(Model.name == name))
        if existing and existing != kind:
            raise InputError(f"model {name!r} already exists as a {existing} model", field="model")
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
    ) -> ResolvedModel:
        """Add a ready version (numbered max + 1); a job registers at most one version."""
        for _ in range(5):
            try:
                done = self._register_once(name, kind, config, artifact_id, sha256, metrics, job_id)
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
        job_id: uuid.UUID | None,
    ) -> ResolvedModel:
        with self.sessions() as session:
            done = None
            if job_id is not None:
                done = session.scalar(select(ModelVersion).where(ModelVersion.job_id == job_id))
            if done is None:
                model = session.scalar(select(Model).where(Model.name == name))
                if model is None:
                    model = Model(name=name, kind=kind, config={})
                    session.add(model)
                    session.flush()
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
                    status="ready",
                )
                session.add(done)
                session.commit()
        return ResolvedModel(name, kind, done.version, done.artifact_id, done.sha256, done.config)

    def list_models(self) -> list[dict[str, Any]]:
        """Return every model with its versions, newest version first."""
        with self.sessions() as session:
            models = list(session.scalars(select(Model).order_by(Model.name)))
            versions = list(
                session.scalars(select(ModelVersion).order_by(ModelVersion.version.desc()))
            )
        by_model: dict[uuid.UUID, list[ModelVersion]] = {}
        for v in versions:
            by_model.setdefault(v.model_id, []).append(v)
        return [model_public(m, by_model.get(m.id, [])) for m in models]

    def get_model(self, name: str) -> dict[str, Any] | None:
        """Return one model with its versions, or None."""
        return next((m for m in self.list_models() if m["name"] == name), None)

    def is_empty(self) -> bool:
        """Return whether no model has been registered yet."""
        with self.sessions() as session:
            return not session.scalar(select(func.count()).select_from(Model))


def model_public(model: Model, versions: list[ModelVersion]) -> dict[str, Any]:
    """Return the client view of a model and its versions."""
    return {
        "name": model.name,
        "kind": model.kind,
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


def submission_check(registry: ModelRegistry) -> Any:
    """Return the check ``shared.jobs.submit.build_job`` applies to a job's model field."""

    def check(job_type: Any, model: str, params: dict[str, Any]) -> str:
        if job_type.model == "target":
            return registry.check_target(model, job_type.model_kind)
        resolved = registry.resolve(model, job_type.model_kind)
        tokenizer = registry.tokenizer(resolved)
        if "prompt" in params and tokenizer and not tokenizer.encode(params["prompt"]):
            raise InputError(
                "the prompt has no tokens for this model's tokenizer", field="params.prompt"
            )
        return resolved.ref

    return check
