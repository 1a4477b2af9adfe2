"""The states of jobs and batches, their terminal sets, and the transitions between job states.

``shared.jobs.store`` is the only writer of ``jobs.status``; every write it makes is one of the
transitions listed here.
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

    @property
    def is_terminal(self) -> bool:
        """Return whether no transition leaves this state."""
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

# Every transition the store makes, and who makes it.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # claimed by a worker; canceled by a client or a batch cancel
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELED}),
    # finished by its worker; back to queued on a retry, a hand-back by a stopping worker, or a
    # rescue of an expired lease
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.QUEUED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


class BatchStatus(StrEnum):
    """The states of a batch, derived from its items' states (never stored)."""

    IN_PROGRESS = "in_progress"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        """Return whether the batch has ended."""
        return self in BATCH_TERMINAL


BATCH_TERMINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELED})
