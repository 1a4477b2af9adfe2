"""What a handler sees of its job: progress, cancel, artifacts, and the lease behind them."""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.data.artifacts import artifact_url
from shared.errors import JobCanceled, LeaseLost
from shared.services import Services
from shared.tables import Artifact, Job

log = logging.getLogger(__name__)

CANCEL_POLL_S = 1.0
PROGRESS_MIN_INTERVAL_S = 0.5


class JobContext:
    """The running job as its handler sees it; owns the lease until the job finishes."""

    def __init__(self, job: Job, token: str, services: Services) -> None:
        self.job = job
        self.token = token
        self.services = services
        self.finished = False
        self.pending_artifacts: list[Artifact] = []
        self._cancel = threading.Event()
        self._lost = threading.Event()
        self._last_poll = time.monotonic()
        self._last_progress = 0.0

    @property
    def job_id(self) -> uuid.UUID:
        """Return the job's id."""
        return self.job.id

    @property
    def workdir(self) -> Path:
        """Return a folder private to this job, kept across attempts (for checkpoints)."""
        path = self.services.settings.artifact_dir / "work" / str(self.job.id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def discard_workdir(self) -> None:
        """Delete the job's private folder (its checkpoints) once the job has succeeded."""
        shutil.rmtree(
            self.services.settings.artifact_dir / "work" / str(self.job.id), ignore_errors=True
        )

    def should_stop(self) -> bool:
        """Return whether the job was canceled or its lease lost (polls the row at most 1/s)."""
        now = time.monotonic()
        if now - self._last_poll >= CANCEL_POLL_S and not self._cancel.is_set():
            self._last_poll = now
            row = self.services.store.get(self.job.id)
            if row is not None and row.cancel_requested:
                self._cancel.set()
        return self._cancel.is_set() or self._lost.is_set()

    def stop_flag(self) -> bool:
        """Return whether the job must stop, from what is known already (no database read)."""
        return self._cancel.is_set() or self._lost.is_set()

    def check(self) -> None:
        """Raise JobCanceled or LeaseLost when the job must stop now."""
        if self.should_stop():
            raise LeaseLost("lease lost") if self._lost.is_set() else JobCanceled("canceled")

    def progress(self, data: dict[str, Any], *, force: bool = False) -> None:
        """Record progress, at most every half second unless ``force``."""
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_MIN_INTERVAL_S:
            return
        self._last_progress = now
        if self.services.store.set_progress(self.job.id, self.token, data) is None:
            self._lost.set()

    def save_artifact(
        self, kind: str, media_type: str, data: bytes, suffix: str, *, defer: bool = False
    ) -> dict[str, Any]:
        """Store a file produced by this job and return its public description.

        ``defer`` records the row together with the job's success (one transaction for a whole
        chunk) instead of at once; use it for outputs nobody needs before the job ends.
        """
        store = self.services.artifacts
        if defer:
            row = store.write(self.job.id, kind, media_type, data, suffix)
            self.pending_artifacts.append(row)
        else:
            row = store.save(self.job.id, kind, media_type, data, suffix)
        return {
            "id": str(row.id),
            "kind": kind,
            "media_type": media_type,
            "size": row.size,
            "sha256": row.sha256,
            "url": artifact_url(row.id),
        }

    def observe_lease(self, owned: dict[uuid.UUID, bool]) -> None:
        """Apply a heartbeat's answer: the job's cancel flag, or the loss of its lease."""
        if self.job.id in owned:
            if owned[self.job.id]:
                self._cancel.set()
        elif not self.finished:
            self._lost.set()

    @property
    def lease_lost(self) -> bool:
        """Return whether another claim owns the job now."""
        return self._lost.is_set()


class Heartbeat:
    """A daemon thread that renews the lease of every job of one claim while they run."""

    def __init__(self, contexts: Sequence[JobContext], interval_s: float) -> None:
        self._contexts = contexts
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aigc-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        ctx = self._contexts[0]
        lease_s = ctx.services.settings.lease_s
        while not self._stop.wait(self._interval_s):
            try:
                owned = ctx.services.store.heartbeat(ctx.token, lease_s)
            except Exception as exc:  # a DB blip must not kill the jobs; the lease has slack
                log.warning("heartbeat failed for claim %s: %s", ctx.token, exc)
                continue
            for each in self._contexts:
                each.observe_lease(owned)
