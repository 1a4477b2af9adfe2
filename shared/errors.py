"""The one exception tree of aigc-queue.

Input errors fail a job (or a request) at once; retryable errors send it back to the queue.
"""

from __future__ import annotations

from typing import Any


class AigcError(Exception):
    """Raised when anything in aigc-queue goes wrong; the base of every error here."""

    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# Errors the caller caused: never retried.
class CallerError(AigcError):
    """Raised when a request is at fault; it may name the field at fault."""

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.field = field


class InputError(CallerError):
    """Raised when a request or a job's parameters are invalid."""

    code = "invalid_input"


class FieldErrors(InputError):
    """Raised when a request has one or more invalid fields; carries all of them."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        super().__init__(f"{first['field']}: {first['message']}", field=first["field"])
        self.errors = errors


class Unauthenticated(AigcError):
    """Raised when a request carries no API key, or one that is unknown or revoked."""

    code = "unauthenticated"


class Forbidden(AigcError):
    """Raised when a request's key lacks the scope the request needs."""

    code = "forbidden"


class TooManyRequests(AigcError):
    """Raised when a tenant is past one of its caps, or a key past its rate limit."""

    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after_s: int, **details: object) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class NotFound(AigcError):
    """Raised when a job, artifact, dataset or model does not exist."""

    code = "not_found"


class Gone(AigcError):
    """Raised when a job's result or file existed but retention has deleted it."""

    code = "expired"


class Conflict(CallerError):
    """Raised when a request conflicts with the current state, such as cancelling a finished job."""

    code = "conflict"


class ModelNotReady(Conflict):
    """Raised when a job names a model whose version is still training."""

    code = "model_not_ready"


class PayloadTooLarge(InputError):
    """Raised when an upload or a batch exceeds a size or count limit."""

    code = "payload_too_large"


# Errors of the infrastructure: safe to retry.
class RetryableError(AigcError):
    """Raised when a job failed for a transient reason and may run again."""

    code = "retryable"


class StoreUnavailable(RetryableError):
    """Raised when the job database cannot be reached."""

    code = "store_unavailable"


class Busy(RetryableError):
    """Raised when an API process has no free slot for a request's database work in time."""

    code = "busy"


class StorageUnavailable(RetryableError):
    """Raised when the artifact storage (a folder or an object store) cannot be reached."""

    code = "storage_unavailable"


# Errors that end a job without it being anyone's input mistake.
class JobCanceled(AigcError):
    """Raised inside a handler when the job's cancel flag was seen."""

    code = "canceled"


class JobTimeout(AigcError):
    """Raised when a job ran past its time limit."""

    code = "timeout"


class WorkerLost(AigcError):
    """Recorded (never raised) when a job's lease expired because its worker was lost."""

    code = "worker_lost"


class LeaseLost(AigcError):
    """Raised when a worker finds that its lease on a job was taken over."""

    code = "lease_lost"


class InvalidTransition(Conflict):
    """Raised when a job is asked for a move its state does not allow (a cancel once it ended)."""
