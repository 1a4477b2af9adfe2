"""What a handler sees of its job: a narrow port, as cog's ``Scope`` is.

A handler reads its job's params and reports progress; asks whether it should stop (canceled,
past its deadline, or its lease lost); saves artifacts; opens datasets; uses and registers
models. It never reaches the database, the broker or the other services directly: its
context holds the narrow ``Ports`` it uses.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.data.artifacts import ArtifactStore, artifact_url
from shared.db import utcnow
from shared.errors import AigcError, InputError, JobCanceled, JobTimeout, LeaseLost
from shared.jobs.store import JobStore
from shared.jobs.streams import TextStreams
from shared.models.registry import ModelRegistry, ResolvedModel
from shared.tables import Artifact, Dataset, Job

log = logging.getLogger(__name__)

PROGRESS_MIN_INTERVAL_S = 0.5

# Yields a model (reference, kind) loaded once per worker: the process's model cache.
UseModel = Callable[[str | None, str], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Ports:
    """The parts of the worker that a running job reaches, each through its context."""

    settings: Settings
    store: JobStore  # claims, progress, outcomes
    artifacts: ArtifactStore  # files, checkpoints, datasets
    registry: ModelRegistry  # registers trained versions
    streams: TextStreams | None  # decoded text for SSE readers; needs Redis
    use_model: UseModel


class JobContext:
    """The running job as its handler sees it; its worker keeps the lease while it runs."""

    def __init__(self, job: Job, ports: Ports) -> None:
        self.job = job
        self.ports = ports
        self.finished = False
        self.pending_artifacts: list[Artifact] = []  # recorded with the success
        self.recorded_artifacts: list[uuid.UUID] = []  # recorded as they were saved
        self._has_workdir = False  # whether the job used a private folder (checkpoints)
        self._cancel = threading.Event()
        self._lost = threading.Event()
        self._timeout = threading.Event()
        self._last_progress = 0.0
        self.stop_requested_at: float | None = None  # when the worker saw the cancel
        left_s = (job.deadline_at - utcnow()).total_seconds() if job.deadline_at else 1e9
        self.claimed_at = time.monotonic()
        self.deadline = self.claimed_at + left_s
        self._ended = threading.Lock()  # held once the attempt's end is counted

    # -- what the job is ---------------------------------------------------------------------
    @property
    def job_id(self) -> uuid.UUID:
        """Return the job's id."""
        return self.job.id

    @property
    def tenant_id(self) -> uuid.UUID | None:
        """Return the tenant that owns the job and all it makes (None: the system)."""
        return self.job.tenant_id

    @property
    def token(self) -> str:
        """Return the token of the claim that runs this attempt."""
        return self.job.worker_id or ""

    @property
    def ran_s(self) -> float:
        """Return the seconds since the job was claimed."""
        return time.monotonic() - self.claimed_at

    def first_end(self) -> bool:
        """Return True the first time only: an attempt's end is counted once."""
        return self._ended.acquire(blocking=False)

    @property
    def settings(self) -> Settings:
        """Return the worker's settings (read only)."""
        return self.ports.settings

    # -- stopping ----------------------------------------------------------------------------
    def should_stop(self) -> bool:
        """Return whether the job must stop: canceled, past its deadline, or its lease lost.

        It reads flags the worker sets (from Redis or its periodic reads), never the database,
        so it is cheap enough to ask at every decode chunk or training step.
        """
        return self._cancel.is_set() or self._lost.is_set() or self.timed_out

    def check(self) -> None:
        """Raise JobTimeout, LeaseLost or JobCanceled when the job must stop now."""
        if self.timed_out:
            raise JobTimeout("the job ran past its time limit")
        if self._lost.is_set():
            raise LeaseLost("lease lost")
        if self._cancel.is_set():
            raise JobCanceled("canceled")

    @property
    def timed_out(self) -> bool:
        """Return whether the job ran past its deadline."""
        return self._timeout.is_set() or time.monotonic() >= self.deadline

    @property
    def lease_lost(self) -> bool:
        """Return whether another claim owns the job now."""
        return self._lost.is_set()

    def request_stop(self) -> None:
        """Mark the job canceled (its worker saw the cancel flag)."""
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
        self._cancel.set()

    def mark_lease_lost(self) -> None:
        """Mark the job as no longer this claim's (its worker handed it back)."""
        self._lost.set()

    def mark_timed_out(self) -> None:
        """Mark the job as past its deadline (its worker ended it)."""
        self._timeout.set()

    def observe_lease(self, owned: dict[uuid.UUID, bool]) -> None:
        """Apply a lease renewal's answer: the job's cancel flag, or the loss of its lease."""
        if self.job.id in owned:
            if owned[self.job.id]:
                self.request_stop()
        elif not self.finished and not self.timed_out:
            self._lost.set()

    # -- reporting ---------------------------------------------------------------------------
    def progress(self, data: dict[str, Any], *, force: bool = False) -> None:
        """Record progress, at most every half second unless ``force``; best effort.

        A batch's chunk records none: its batch's counts are its progress.
        """
        now = time.monotonic()
        if self.job.batch_id is not None:
            return
        if not force and now - self._last_progress < PROGRESS_MIN_INTERVAL_S:
            return
        self._last_progress = now
        try:
            if self.ports.store.set_progress(self.job.id, self.token, data) is None:
                self._lost.set()
        except Exception as exc:  # a database blip must not fail the job; the lease has slack
            log.warning("job %s: progress not recorded: %s", self.job.id, exc)

    def stream_text(
        self, tokens: list[int], decode: Callable[[list[int]], str], *, last: bool = False
    ) -> None:
        """Offer the text decoded so far to the job's SSE readers; never blocks (no Redis: no-op).

        Batch items do not stream: their batch's counts are their progress.
        """
        streams = self.ports.streams
        if streams is not None and self.job.batch_id is None:
            streams.offer(str(self.job.id), tokens, decode, last=last)

    # -- files and models --------------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        """Return a local folder private to this job (for checkpoints)."""
        self._has_workdir = True
        return self.ports.artifacts.workdir(self.job.id)

    def pull_workdir(self) -> Path:
        """Fetch the job's stored private files (the last checkpoint) into workdir; return it.

        Attempts may run on different hosts: the artifact store carries the checkpoint over.
        """
        self._has_workdir = True
        return self.ports.artifacts.pull_work(self.job.id)

    def push_workdir(self, names: list[str]) -> None:
        """Store the named files of workdir, in order, so any host can resume from them."""
        self.ports.artifacts.push_work(self.job.id, names)

    def drop_workdir(self, names: list[str]) -> None:
        """Delete the named files of workdir, here and in the store (an older checkpoint's)."""
        if names:
            self.ports.artifacts.drop_work(self.job.id, names)

    def discard_workdir(self) -> None:
        """Delete the job's private files (its checkpoints) once the job has succeeded."""
        if not self._has_workdir:
            return  # most jobs have none: no call to the store for them
        try:
            self.ports.artifacts.discard_work(self.job.id)
        except AigcError as exc:  # the job succeeded all the same; retention removes them later
            log.warning("job %s: private files not removed: %s", self.job.id, exc)

    def save_artifact(
        self, kind: str, media_type: str, data: bytes, suffix: str, *, defer: bool = False
    ) -> dict[str, Any]:
        """Store a file produced by this job and return its public description.

        ``defer`` records the row together with the job's success (one transaction for a whole
        chunk) instead of at once; use it for outputs nobody needs before the job ends.
        """
        store = self.ports.artifacts
        if defer:
            row = store.write(self.job.id, kind, media_type, data, suffix, tenant_id=self.tenant_id)
            self.pending_artifacts.append(row)
        else:
            row = store.save(self.job.id, kind, media_type, data, suffix, tenant_id=self.tenant_id)
            self.recorded_artifacts.append(row.id)  # the success keeps it; a lost attempt's go
        return {
            "id": str(row.id),
            "kind": kind,
            "media_type": media_type,
            "size": row.size,
            "sha256": row.sha256,
            "url": artifact_url(row.id),
        }

    def open_dataset(self, dataset_id: uuid.UUID, kind: str) -> Path:
        """Return the stored file of an uploaded dataset of the given kind."""
        with self.ports.store.sessions() as session:
            row = session.get(Dataset, dataset_id)
        if row is None:
            raise InputError("dataset not found", field="params.dataset_id")
        if row.kind != kind:
            raise InputError(f"dataset is {row.kind}, not {kind}", field="params.dataset_id")
        artifacts = self.ports.artifacts
        return artifacts.local_copy(artifacts.get(row.artifact_id))

    def register_model(
        self,
        model_file: Path,
        kind: str,
        config: dict[str, Any],
        metrics: dict[str, Any],
        epochs: int = 0,
    ) -> ResolvedModel:
        """Store a trained model file and register it as the next version of the job's model.

        A job registers one version per count of epochs trained, however often it is re-run.
        """
        artifact = self.save_artifact(
            "model", "application/octet-stream", model_file.read_bytes(), ".keras"
        )
        return self.ports.registry.register(
            name=self.job.model,
            kind=kind,
            config=config,
            artifact_id=uuid.UUID(artifact["id"]),
            sha256=artifact["sha256"],
            metrics=metrics,
            job_id=self.job.id,
            tenant_id=self.tenant_id,
            job_epochs=epochs,
        )

    @contextmanager
    def model(self, kind: str) -> Iterator[Any]:
        """Yield the job's model, loaded once per worker and kept loaded while the job uses it."""
        with self.ports.use_model(self.job.model, kind) as loaded:
            yield loaded
