"""Hostile requests through the real API: each gets a 4xx problem naming its field, stores nothing.

Most cases once answered 500 (or 503 on PostgreSQL, or stored what they should not); a few guard
answers that were already right (marked so).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from shared.tables import Artifact, Batch, Dataset, Job
from tests.conftest import Stack
from tests.integration.test_datasets import artifact_files
from tests.shared.data.test_datasets import (
    ONE_PNG,
    corrupted,
    make_zip,
    npy,
    npy_header,
    npy_of,
    npz,
    patched,
    png,
    truncated,
)

pytestmark = pytest.mark.integration

DEEP = b"[" * 50_000 + b"]" * 50_000
JSON = {"Content-Type": "application/json"}
ITEM = b'{"custom_id": "a", "params": {}}'


def _json(body: bytes) -> dict[str, Any]:
    return {"data": body, "headers": JSON}


def _jsonl(*lines: bytes) -> dict[str, Any]:
    return {"files": {"file": ("items.jsonl", b"\n".join(lines))}, "data": {"type": "test.sleep"}}


def _upload(filename: str, raw: bytes, **form: str) -> dict[str, Any]:
    return {"files": {"file": (filename, raw)}, "data": form}


def _cursor(stamp: str) -> str:
    raw = f"{stamp}|00000000-0000-0000-0000-000000000000".encode()
    return "/v1/jobs?cursor=" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def case(name: str, method: str, path: str, field: str, **kwargs: Any) -> Any:
    """Return one hostile request and the field its problem must name."""
    return pytest.param(method, path, kwargs, field, id=name)


CASES = [
    # JSON nested 50,000 deep: json.loads raised RecursionError.
    case("deep-job", "post", "/v1/jobs", "body", **_json(b'{"params": ' + DEEP + b"}")),
    case("deep-array", "post", "/v1/jobs", "body", **_json(DEEP)),
    case("deep-batch", "post", "/v1/batches", "body", **_json(DEEP)),
    case("deep-line", "post", "/v1/batches", "items[1]", **_jsonl(ITEM, DEEP)),
    # NUL, which PostgreSQL cannot store: the insert failed after validation, as a 503.
    case(
        "nul-custom-id",
        "post",
        "/v1/batches",
        "items[0].custom_id",
        json={"type": "test.sleep", "items": [{"custom_id": "a\x00", "params": {}}]},
    ),
    case(
        "nul-line",
        "post",
        "/v1/batches",
        "items[0].custom_id",
        **_jsonl(b'{"custom_id": "a\\u0000", "params": {}}'),
    ),
    case("nul-query", "get", "/v1/jobs?type=%00", "type"),
    case("nul-name", "post", "/v1/datasets", "name", **_upload("a.txt", b"roses\n", name="a\x00")),
    case("nul-filename", "post", "/v1/datasets", "file", **_upload("a\x00.txt", b"roses\n")),
    # Cursors whose timestamp has no timezone, or leaves the range of dates once in UTC.
    case("naive-cursor", "get", _cursor("2024-01-01T00:00:00"), "cursor"),
    case("overflow-cursor", "get", _cursor("0001-01-01T00:00:00+14:00"), "cursor"),
    # Uploads: archives that lie or are broken, degenerate arrays, a costly decode.
    case(
        "lying-zip",
        "post",
        "/v1/datasets",
        "file",
        **_upload("a.zip", patched(ONE_PNG, file_size=100)),
    ),
    case(
        "encrypted-zip",
        "post",
        "/v1/datasets",
        "file",
        **_upload("a.zip", patched(ONE_PNG, flags=1)),
    ),
    case(
        "aes-zip", "post", "/v1/datasets", "file", **_upload("a.zip", patched(ONE_PNG, method=99))
    ),
    case("corrupt-zip", "post", "/v1/datasets", "file", **_upload("a.zip", corrupted(ONE_PNG))),
    case("truncated-zip", "post", "/v1/datasets", "file", **_upload("a.zip", truncated(ONE_PNG))),
    case(
        "npz-extra-member",
        "post",
        "/v1/datasets",
        "file",
        **_upload("a.npz", make_zip({"images.npy": npy_of(np.zeros((2, 8, 8))), "run.sh": b""})),
    ),
    case(
        "complex-npz",
        "post",
        "/v1/datasets",
        "file",
        **_upload("a.npz", npz(images=np.zeros((2, 8, 8), np.complex64))),
    ),
    case(
        "empty-images-npz",
        "post",
        "/v1/datasets",
        "file",
        **_upload("a.npz", npz(images=np.zeros((2, 0, 0), np.uint8))),
    ),
    case(
        "huge-npz",
        "post",
        "/v1/datasets",
        "file",
        **_upload("a.npz", make_zip({"images.npy": npy(npy_header("(1000000000000, 8, 8)"))})),
    ),
    case(
        "300-megapixel-zip",  # a few hundred KB that cost seconds of API CPU to decode
        "post",
        "/v1/datasets",
        "file",
        **_upload("a.zip", make_zip({f"{i}.png": png(1024) for i in range(300)})),
    ),
    # Already refused before; kept as guards.
    case(
        "surrogate-custom-id",
        "post",
        "/v1/batches",
        "items[0].custom_id",
        **_json(b'{"type": "test.sleep", "items": [{"custom_id": "\\ud800", "params": {}}]}'),
    ),
    case("array-body", "post", "/v1/jobs", "body", **_json(b"[1, 2]")),
    case("null-body", "post", "/v1/jobs", "body", **_json(b"null")),
    case("utf16-garbage-body", "post", "/v1/jobs", "body", **_json(b"\xff\xfe{")),
    case("array-line", "post", "/v1/batches", "items[1]", **_jsonl(ITEM, b"[1]")),
    # Query values as long as gunicorn lets through (it answers longer request lines itself).
    case("huge-limit", "get", "/v1/jobs?limit=" + "9" * 4000, "limit"),
    case("huge-cursor", "get", "/v1/jobs?cursor=" + "A" * 4000, "cursor"),
    case(
        "infinite-wait",
        "get",
        "/v1/jobs/00000000-0000-0000-0000-000000000000?wait_s=1e999",
        "wait_s",
    ),
    case("malformed-cursor", "get", _cursor("not a time"), "cursor"),
    case("no-filename", "post", "/v1/datasets", "file", **_upload("", b"roses\n")),
    # A boolean is no number (pydantic's lax mode would take false as 0), nor a digit string.
    case(
        "bool-priority",
        "post",
        "/v1/jobs",
        "priority",
        json={"type": "test.sleep", "priority": False},
    ),
    case(
        "bool-param",
        "post",
        "/v1/jobs",
        "params.seconds",
        json={"type": "test.sleep", "params": {"seconds": True}},
    ),
    case(
        "text-param",
        "post",
        "/v1/jobs",
        "params.steps",
        json={"type": "test.sleep", "params": {"steps": "2"}},
    ),
    case(
        "bool-item-param",
        "post",
        "/v1/batches",
        "items[0].params.steps",
        json={"type": "test.sleep", "items": [{"custom_id": "a", "params": {"steps": True}}]},
    ),
    case(
        "bool-choice",
        "post",
        "/v1/jobs",
        "params.channels",
        json={"type": "image.train", "model": "m", "params": {"channels": True}},
    ),
]


def _stored(stack: Stack) -> tuple[int, ...]:
    with stack.services.store.sessions() as session:
        rows = tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (Job, Batch, Dataset, Artifact)
        )
    return (*rows, artifact_files(stack))


@pytest.mark.parametrize("method, path, kwargs, field", CASES)
def test_hostile_input_gets_a_problem_naming_the_field_and_stores_nothing(
    stack: Stack, method: str, path: str, kwargs: dict[str, Any], field: str
) -> None:
    before = _stored(stack)
    resp = getattr(stack.api, method)(path, **kwargs)
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert field in [e["field"] for e in resp.json()["errors"]], resp.text
    assert _stored(stack) == before


def test_brackets_and_quotes_inside_strings_are_not_nesting(stack: Stack) -> None:
    custom_id = '[{"' * 60 + "\\" + '"]}' * 3  # 60 levels of brackets, all inside one string
    # test.fail ends at once and writes no effect files, which other tests count.
    body = {"type": "test.fail", "items": [{"custom_id": custom_id, "params": {}}]}
    resp = stack.api.post("/v1/batches", json=body)
    assert resp.status_code == 202, resp.text
