"""Schemathesis over the whole OpenAPI document: no request, valid or not, gets a server error.

Every operation gets valid (positive) and invalid (negative) requests generated from the document
and sent to the real API on PostgreSQL. The workers stop consuming meanwhile, so nothing the fuzzer
submits runs (training jobs, test jobs that crash their worker); what it queued is cancelled before
they resume, and the session's other tests find an idle stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.conftest import Stack

pytestmark = pytest.mark.integration

EXAMPLES = 12  # per operation and mode: a few hundred requests in all, under a minute
# content_type_conformance is left out: gunicorn answers an over-long request line or URI itself
# (400 or 414, in text/html) before the app, whose answers are all problem+json, can.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# The only change made to generated requests: a long poll's wait (up to 60 s) is capped, as a job
# that never runs (no worker consumes meanwhile) would hold the request for the whole wait.
MAX_WAIT_S = 0.2


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_no_request_gets_a_server_error(stack: Stack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.api.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, "the document lost operations"
    with _workers_paused(stack):
        failures = [
            failure
            for operation in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            for failure in _fuzz(operation, mode, stack.api.auth)
        ]
    assert not failures, "\n\n".join(failures)


def _fuzz(
    operation: schemathesis.APIOperation, mode: GenerationMode, headers: dict[str, str]
) -> list[str]:
    """Send generated requests, with a tenant's key, to one operation; report failed checks."""
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is reported as sent
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        _cap_wait(case)
        try:
            case.call_and_validate(headers=headers, checks=CHECKS)
        except FailureGroup as exc:
            failures.append(f"{operation.label} ({mode.value}): {exc}")

    try:
        run()
    except Unsatisfiable:
        # Nothing in the operation's inputs can be made invalid (no inputs, or free-form strings).
        if mode is GenerationMode.POSITIVE:
            raise
    return failures


def _cap_wait(case: schemathesis.Case) -> None:
    value = (case.query or {}).get("wait_s")
    try:
        too_long = float(value) > MAX_WAIT_S
    except (TypeError, ValueError):  # not a number: the API refuses it without waiting
        return
    if too_long:
        case.query["wait_s"] = MAX_WAIT_S


@contextmanager
def _workers_paused(stack: Stack) -> Iterator[None]:
    """Have every worker stop consuming, and cancel what was queued meanwhile before it resumes."""
    control = stack.services.celery.control
    consumed = {
        worker: [queue["name"] for queue in queues]
        for worker, queues in (control.inspect(timeout=10).active_queues() or {}).items()
    }
    assert consumed, "no worker answered"
    _each_queue(consumed, control.cancel_consumer)
    try:
        yield
    finally:
        _cancel_queued(stack)
        _each_queue(consumed, control.add_consumer)


def _each_queue(consumed: dict[str, list[str]], action: Callable[..., Any]) -> None:
    """Apply a remote-control action to each queue of each worker, that worker alone."""
    for worker, queues in consumed.items():
        for queue in queues:
            assert action(queue, destination=[worker], reply=True, timeout=10), worker


def _cancel_queued(stack: Stack) -> None:
    """Cancel every queued job (the fuzzer's) through the API, paging with the list's cursor."""
    params: dict[str, str | int] = {"status": "queued", "limit": 100}
    while True:
        page = stack.api.get("/v1/jobs", params=params).json()
        for job in page["data"]:
            resp = stack.api.post(f"/v1/jobs/{job['id']}/cancel")
            assert resp.status_code in (200, 202, 409), resp.text
        if not page["next_cursor"]:
            return
        params["cursor"] = page["next_cursor"]
