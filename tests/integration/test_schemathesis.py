"""Schemathesis over the whole OpenAPI document, every check on: the API keeps its contract.

Every operation gets valid (positive) and invalid (negative) requests generated from the document
and sent to the real API on PostgreSQL, with a tenant's key. The workers stop consuming meanwhile,
so nothing the fuzzer submits runs (training jobs, test jobs that crash their worker); what it
queued is cancelled before they resume, and the session's other tests find an idle stack. The
few failures that are by design are listed in ``_by_design``, each with its reason. The event
streams, which a random id never reaches, are checked against the document on real jobs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import load_all_checks
from schemathesis.core.failures import Failure
from schemathesis.core.transport import Response
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from shared.jobs.jsoninput import UNSTORABLE_TEXT
from tests.conftest import Stack

pytestmark = pytest.mark.integration

EXAMPLES = 12  # per operation and mode: a few hundred requests in all, under a minute
load_all_checks()
CHECKS = list(REGISTERED_CHECKS.get_all())
MULTIPART = "multipart/form-data"
# Fields whose valid form (what the document can say) is not enough: the API refuses a value
# of the right form for what it names. A positive request refused on these alone is by design.
STATEFUL_FIELDS = {
    "model": "a model must be registered: the document gives a name's form, not the registry",
    "webhook": "the SSRF guard resolves the URL's host: whether it is public is no schema's",
    "cursor": "a cursor is opaque, one the API issued: any other string is refused",
    "params": "a training job's memory need (a product of several params) and the params' size "
    "are bounded as a whole, which no bound on one field can say",
    "Idempotency-Key": "a key once used is bound to its request: reused with another, it is "
    "refused (the fuzzer repeats values)",
}
# A file's contents, which the document describes as bytes, are checked for what they hold.
FILE_FIELDS = re.compile(r"file|items(\[\d+\].*)?")
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


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_event_streams_match_the_document(stack: Stack) -> None:
    """A job's stream, opened as it starts, and a batch's conform to their documented events."""
    schema = schemathesis.openapi.from_url(f"{stack.api.base_url}/openapi.json")
    job_id = stack.api.submit("test.stream", {"chunks": 3, "seconds": 0.3})["id"]
    seen = _stream_conforms(schema, stack, "/v1/jobs/{id}/events", job_id)
    assert {"status", "text", "result"} <= seen, seen
    items = [{"custom_id": str(i), "params": {"seconds": 0.2}} for i in range(3)]
    batch = stack.api.post("/v1/batches", json={"type": "test.sleep", "items": items})
    assert batch.status_code == 202, batch.text
    seen = _stream_conforms(schema, stack, "/v1/batches/{id}/events", batch.json()["id"])
    assert "result" in seen, seen


def _stream_conforms(schema: Any, stack: Stack, path: str, resource_id: str) -> set[str]:
    """Read a stream to its end, check its events against the document; return their names."""
    case = schema[path]["GET"].Case(path_parameters={"id": resource_id})
    response = case.call(headers=stack.api.auth, timeout=60)
    assert response.status_code == 200, response.text
    try:
        case.validate_response(response, [response_schema_conformance])
    except FailureGroup as exc:
        pytest.fail(f"{path}: {[f.message for f in exc.exceptions]}")
    return set(re.findall(r"^event: (\w+)$", response.text, re.MULTILINE))


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
        response = case.call(headers=headers)
        try:
            case.validate_response(
                response, CHECKS, headers=headers, transport_kwargs={"headers": headers}
            )
        except FailureGroup as exc:
            kept = [
                f
                for f in exc.exceptions
                if _by_design(case, Response.from_any(response), f) is None
            ]
            curl = (
                f"{case.as_curl_command(headers)}\n-> {response.status_code} {response.text[:300]}"
            )
            failures.extend(
                f"{operation.label} ({mode.value}): {f.title}\n{f.message}\n{curl}" for f in kept
            )

    try:
        run()
    except Unsatisfiable:
        # Nothing in the operation's inputs can be made invalid (no inputs, or free-form strings).
        if mode is GenerationMode.POSITIVE:
            raise
    return failures


def _by_design(case: schemathesis.Case, response: Response, failure: Failure) -> str | None:
    """Return why a failure is by design, or None for a real one."""
    if failure.code == "ST202" and response.status_code == 422:
        errors = response.json().get("errors") or []
        reasons = [_refused_by_design(case, e["field"], e["message"]) for e in errors]
        if errors and all(reasons):
            return "; ".join(r for r in reasons if r)
    if (
        failure.code == "ST201"
        and case.media_type == MULTIPART
        and "violates `type`" in failure.message
    ):
        return "a form field is text: a null or a number arrives as its text, a valid string"
    if response.status_code in (400, 414) and response.headers.get("content-type", [""])[
        0
    ].startswith("text/html"):
        return "gunicorn answers an over-long request line or URI itself, before the app can"
    return None


def _refused_by_design(case: schemathesis.Case, field: str, message: str) -> str | None:
    if message == UNSTORABLE_TEXT:
        return "text PostgreSQL cannot store (NUL, unpaired surrogates, which I-JSON forbids)"
    if field in STATEFUL_FIELDS:
        return STATEFUL_FIELDS[field]
    if case.media_type == MULTIPART and FILE_FIELDS.fullmatch(field):
        return "an upload must hold what it says (text, images, JSONL): bytes in the document"
    return None


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
