"""Pieces the training handlers share: checkpoints, datasets and registering the result."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from shared.errors import InputError
from shared.models.registry import ResolvedModel
from shared.tables import Dataset
from worker.context import JobContext

STATE_FILE = "state.json"
WAIT_POLL_S = 0.5


def read_checkpoint_state(workdir: Path) -> dict[str, Any] | None:
    """Return the last checkpoint's state (epoch, file checksums), or None to start fresh."""
    path = workdir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_checkpoint_state(workdir: Path, state: dict[str, Any]) -> None:
    """Record a checkpoint's state atomically, after its model files are written."""
    tmp = workdir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(workdir / STATE_FILE)


def dataset_path(ctx: JobContext, dataset_id: uuid.UUID, kind: str) -> Path:
    """Return the stored file of an uploaded dataset of the given kind."""
    with ctx.services.store.sessions() as session:
        row = session.get(Dataset, dataset_id)
    if row is None:
        raise InputError("dataset not found", field="params.dataset_id")
    if row.kind != kind:
        raise InputError(f"dataset is {row.kind}, not {kind}", field="params.dataset_id")
    return ctx.services.artifacts.get(row.artifact_id)[1]


def register_model(
    ctx: JobContext, model_file: Path, kind: str, config: dict[str, Any], metrics: dict[str, Any]
) -> ResolvedModel:
    """Store the trained model as an artifact and register it as the model's next version."""
    artifact = ctx.save_artifact(
        "model", "application/octet-stream", model_file.read_bytes(), ".keras"
    )
    return ctx.services.registry.register(
        name=ctx.job.model,
        kind=kind,
        config=config,
        artifact_id=uuid.UUID(artifact["id"]),
        sha256=artifact["sha256"],
        metrics=metrics,
        job_id=ctx.job_id,
    )


def finite(value: float) -> float | None:
    """Return value, or None for NaN/inf (JSON has no NaN)."""
    return value if value == value and abs(value) != float("inf") else None


def wait_for_future(ctx: JobContext, future: Future, progress: Callable[[], dict[str, Any]]) -> Any:
    """Wait for a scheduler's answer, polling for cancel and writing progress meanwhile."""
    while True:
        try:
            return future.result(timeout=WAIT_POLL_S)
        except FutureTimeout:
            ctx.should_stop()  # reads the cancel flag; the scheduler sees it at its next chunk
            ctx.progress(progress())
