"""The states of jobs and batches, and their terminal sets.

The moves between job states are ``shared.jobs.lifecycle``'s table.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """The states of a job: ``queued → running → succeeded | failed | canceled``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class BatchStatus(StrEnum):
    """The states of a batch, derived from its items' states (never stored)."""

    IN_PROGRESS = "in_progress"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


BATCH_TERMINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELED})
