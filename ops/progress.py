"""Progress bars for commands that wait on jobs."""

from __future__ import annotations

from typing import Any

import click

from ops.client import Client
from shared.jobs.status import TERMINAL


def fraction(job: dict[str, Any]) -> float:
    """Return how far along a job is, from 0 to 1, from its status and progress."""
    if job["status"] in TERMINAL:
        return 1.0
    progress = job.get("progress") or {}
    if isinstance(progress.get("fraction"), int | float):
        return max(0.0, min(1.0, float(progress["fraction"])))
    if progress.get("steps"):
        return min(1.0, (progress.get("step", 0) + 1) / progress["steps"])
    return 0.0


def describe(job: dict[str, Any]) -> str:
    """Return a short status line for a job."""
    progress = job.get("progress") or {}
    bits = [job["status"]]
    for key in ("epoch", "loss", "d_loss", "g_loss", "eta_s"):
        if key in progress and progress[key] is not None:
            value = progress[key]
            bits.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(bits)


def wait_with_bar(
    client: Client, job_id: str, timeout_s: float | None = None, label: str | None = None
) -> dict[str, Any]:
    """Follow a job to its end while drawing a progress bar on stderr."""
    with click.progressbar(
        length=1000,
        label=label or job_id[:8],
        file=click.get_text_stream("stderr"),
        show_eta=False,
        item_show_func=lambda s: s,
    ) as bar:

        def update(job: dict[str, Any]) -> None:
            bar.update(int(fraction(job) * 1000) - bar.pos, describe(job))

        return client.wait(job_id, on_update=update, timeout_s=timeout_s)
