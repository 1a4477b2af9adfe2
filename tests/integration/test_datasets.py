"""Dataset uploads over HTTP: good ones are stored and trainable, hostile ones leave no trace."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from shared.tables import Artifact, Dataset
from tests.conftest import Stack
from tests.shared.data.test_datasets import make_zip, png

pytestmark = pytest.mark.integration


def _stored(stack: Stack) -> tuple[int, int, int]:
    with stack.services.store.sessions() as session:
        datasets = session.scalar(select(func.count()).select_from(Dataset))
        artifacts = session.scalar(select(func.count()).select_from(Artifact))
    return datasets, artifacts, artifact_files(stack)


def artifact_files(stack: Stack) -> int:
    """Count the stored files, not the effect files that test jobs still running may write."""
    effects = stack.settings.artifact_dir / "effects"
    files = stack.settings.artifact_dir.rglob("*")
    return sum(1 for p in files if p.is_file() and effects not in p.parents)


def _upload(stack: Stack, name: str, raw: bytes):
    return stack.api.post(
        "/v1/datasets", files={"file": (name, io.BytesIO(raw))}, data={"name": name}
    )


def test_valid_uploads_are_stored_and_listed(stack: Stack) -> None:
    text = _upload(stack, "poems.txt", b"roses are red\nviolets are blue\n" * 50)
    assert text.status_code == 201, text.text
    images = _upload(stack, "faces.zip", make_zip({f"{i}.png": png(16, "RGB") for i in range(3)}))
    assert images.status_code == 201, images.text
    assert images.json()["kind"] == "image" and images.json()["items"] == 3
    listed = {d["id"] for d in stack.api.get("/v1/datasets").json()["data"]}
    assert {text.json()["id"], images.json()["id"]} <= listed


@pytest.mark.parametrize(
    "name, raw",
    [
        ("evil.zip", make_zip({"../../escape.png": png()})),
        ("link.zip", make_zip({"ok.png": png()}, links=("x.png",))),
        ("bomb.zip", make_zip({"big.png": b"\0" * (20 * 1024 * 1024)})),
        ("junk.zip", make_zip({"fake.png": b"not an image"})),
        ("latin1.txt", "café".encode("latin-1")),
    ],
)
def test_hostile_uploads_get_a_problem_and_store_nothing(
    stack: Stack, name: str, raw: bytes
) -> None:
    before = _stored(stack)
    resp = _upload(stack, name, raw)
    assert resp.status_code in (413, 422), resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.json()["errors"][0]["field"] == "file"
    assert _stored(stack) == before
    assert not list(stack.settings.artifact_dir.parent.rglob("escape.png"))


def test_upload_without_a_file_is_rejected(stack: Stack) -> None:
    resp = stack.api.post("/v1/datasets", data={"name": "x"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "file"
