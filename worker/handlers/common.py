"""Pieces the handlers share: checkpoints, waiting on a scheduler, and JSON-safe numbers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from shared.errors import JobCanceled
from shared.jobs.params import TrainParams
from worker.context import JobContext

STATE_FILE = "state.json"
WAIT_POLL_S = 0.5

T = TypeVar("T")


def read_checkpoint_state(ctx: JobContext) -> dict[str, Any] | None:
    """Return the last checkpoint's state (epoch, file checksums), or None to start fresh.

    The checkpoint is fetched from the artifact store first: the attempt may run on a host
    other than the one that wrote it. Its files come back under the names the handler saved.
    """
    path = ctx.pull_workdir() / STATE_FILE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    for tagged in state.get("files", []):
        _link(ctx.workdir / tagged, ctx.workdir / tagged.split("-", 1)[1])
    return state


def _link(src: Path, dst: Path) -> None:
    """Give ``src`` the second name ``dst`` (in place of whatever file had it)."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    dst.unlink(missing_ok=True)
    os.link(src, dst)


def write_checkpoint_state(ctx: JobContext, state: dict[str, Any], files: list[str]) -> None:
    """Record a checkpoint: its files under names of their epoch, then the state naming them.

    A checkpoint's files are never overwritten: a process killed while it writes the next one
    leaves the last state and the very files it names (on the local store the work folder may
    be the stored copy itself). The previous checkpoint's files go once the new state is stored.
    """
    tag = f"e{state['epoch']}-"
    kept = [f"{tag}{name}" for name in files]
    for name, tagged in zip(files, kept, strict=True):
        # A second name for the same file: the handler's next save replaces its own name only
        # (``save_model`` renames a new file over it), and its caller may still read it now.
        _link(ctx.workdir / name, ctx.workdir / tagged)
    state_path = ctx.workdir / STATE_FILE
    previous = json.loads(state_path.read_text()).get("files", []) if state_path.exists() else []
    tmp = ctx.workdir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps({**state, "files": kept}))
    tmp.replace(state_path)
    # The state goes last: a stored state names only files already stored.
    ctx.push_workdir([*kept, STATE_FILE])
    ctx.drop_workdir([name for name in previous if name not in kept])


def version_due(epochs_done: int, params: TrainParams) -> bool:
    """Return whether an interim version is registered after epochs_done (not the last epoch)."""
    every = params.version_every
    if every is None or epochs_done >= params.epochs:
        return False  # the final version is registered when the job ends
    return epochs_done == 1 or epochs_done % every == 0


def version_note(registered: dict[str, Any]) -> dict[str, Any]:
    """Return what a training job's progress says of a version it registered, and when."""
    return {
        "model": registered["model"],
        "epochs": registered["metrics"]["epochs"],
        "at": datetime.now(UTC).isoformat(),
    }


def finite(value: float) -> float | None:
    """Return value, or None for NaN/inf (JSON has no NaN)."""
    return value if value == value and abs(value) != float("inf") else None


def wait_for_future(
    ctx: JobContext, future: Future, progress: Callable[[], dict[str, Any]] | None = None
) -> Any:
    """Wait for a scheduler's answer, writing progress meanwhile, until the job must stop.

    The wait ends at the job's deadline at the latest: a request stranded on a model-owner
    thread can never hold its job thread for ever. The scheduler drops a stopped job's request
    at its next chunk.
    """
    while True:
        try:
            return future.result(timeout=WAIT_POLL_S)
        except FutureTimeout:
            ctx.check()
            if progress is not None:
                ctx.progress(progress())
        except JobCanceled:
            ctx.check()  # the precise reason: canceled, timed out or lost
            raise


def one_by_one(
    handler: Callable[[JobContext, Any], T], ctx: JobContext, params: list[Any]
) -> list[T | BaseException]:
    """Run a chunk's items one after the other (no dynamic batching): each fails alone."""
    return [attempt(lambda p=p: handler(ctx, p)) for p in params]


def attempt(call: Callable[[], T]) -> T | BaseException:
    """Return ``call()``, or the exception it raised: one item of a chunk fails alone."""
    try:
        return call()
    except BaseException as exc:
        return exc
