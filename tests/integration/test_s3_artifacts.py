"""Artifacts in S3 through the real stack: the workers' artifact folder is not the API's.

The stack runs on a private Redis, a scratch database and a bucket of the tests' S3 server
(moto's, a process). Its workers get an artifact folder of their own, as on another host: every
file the API serves, and every model and dataset a worker loads, must come through the bucket.
"""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from sqlalchemy import select

from shared.tables import Artifact
from tests.conftest import Stack, private_stack
from tests.integration.test_models import TINY_IMAGE, TINY_TEXT
from tests.s3server import S3Server
from tests.support import wait_for

# Not marked ml though they train tiny models: they test where files go, which does not depend
# on the Keras backend, so the JAX pass of `make test` need not repeat them.
pytestmark = pytest.mark.integration

PRESIGN_TTL_S = 3
TRAIN_TIMEOUT_S = 240
TRAIN_TEST_TIMEOUT_S = 600  # a training or two, each child importing TensorFlow anew
WORKER_HOST = "worker-host"  # the workers' artifact folder, beside the API's


@pytest.fixture(scope="module")
def s3stack(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[Stack]:
    """A stack whose artifacts live in S3, with the workers on another "host"."""
    tmp = tmp_path_factory.mktemp("s3stack")
    worker_host = {"AIGC_ARTIFACT_DIR": str(tmp / WORKER_HOST)}
    with private_stack(
        tmp,
        "s3",
        {"generate": worker_host, "train": worker_host},
        artifact_dir=tmp / "api-host",
        artifact_presign_ttl_s=PRESIGN_TTL_S,
        # A training child imports TensorFlow for a minute on a busy machine: a 2 s lease
        # would be rescued from under it, and these tests are about files, not leases.
        lease_s=10.0,
        heartbeat_s=2.0,
        **s3_server.settings(),
    ) as stack:
        stack.extra["s3"] = s3_server
        yield stack


def _recorded_file(stack: Stack) -> tuple[str, bytes]:
    """Run a test job that leaves one file; return the file's API path and its bytes."""
    job = stack.api.wait(stack.api.submit("test.sleep", {"record": True})["id"])
    assert job["status"] == "succeeded", job
    with stack.services.store.sessions() as session:
        artifact_id = session.scalar(
            select(Artifact.id).where(Artifact.job_id == uuid.UUID(job["id"]))
        )
    return f"/v1/artifacts/{artifact_id}", job["id"].encode()


def _serve_by(stack: Stack, mode: str) -> None:
    """Restart the API with another AIGC_ARTIFACT_SERVE."""
    api = stack.handle("api")
    api.stop()
    api.child.env["AIGC_ARTIFACT_SERVE"] = mode
    api.start()
    stack.api.wait_ready()


def _worker_host(stack: Stack) -> Path:
    return stack.tmp / WORKER_HOST


def test_files_stream_from_s3_to_their_tenant_only(s3stack: Stack) -> None:
    path, content = _recorded_file(s3stack)
    resp = s3stack.api.get(path)
    assert resp.status_code == 200 and resp.content == content
    assert resp.headers["Content-Type"].startswith("text/plain")
    again = s3stack.api.get(path, headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status_code == 304
    other = s3stack.client("s3-intruder").get(path)
    assert other.status_code == 404
    assert other.headers["Content-Type"] == "application/problem+json"
    # Neither host keeps the file: it is in the bucket only.
    assert not (s3stack.settings.artifact_dir / "jobs").exists()
    assert not (_worker_host(s3stack) / "jobs").exists()


def test_redirects_go_to_presigned_urls_that_expire(s3stack: Stack) -> None:
    path, content = _recorded_file(s3stack)
    _serve_by(s3stack, "redirect")
    try:
        resp = s3stack.api.get(path, allow_redirects=False)
        assert resp.status_code == 307 and resp.headers["Cache-Control"] == "no-store"
        url = resp.headers["Location"]
        assert url.startswith(s3stack.settings.s3_endpoint_url or "")
        assert requests.get(url, timeout=10).content == content
        other = s3stack.client("s3-intruder").get(path, allow_redirects=False)
        assert other.status_code == 404 and "Location" not in other.headers
        wait_for(lambda: requests.get(url, timeout=10).status_code == 403, PRESIGN_TTL_S + 10)
        followed = s3stack.api.get(path)  # a new redirect, a new URL
        assert followed.status_code == 200 and followed.content == content
    finally:
        _serve_by(s3stack, "stream")


@pytest.mark.timeout(TRAIN_TEST_TIMEOUT_S)
def test_a_text_model_trains_on_a_stored_dataset_resumes_elsewhere_and_generates(
    s3stack: Stack,
) -> None:
    # One training for both paths (a training child imports TensorFlow anew): its dataset and
    # its checkpoint come from the bucket, and its worker host vanishes after the first epoch.
    api, store, train = s3stack.api, s3stack.services.artifacts.store, s3stack.handle("train")
    corpus = ("the quick brown fox jumps over the lazy dog. " * 500).encode()
    upload = api.post("/v1/datasets", files={"file": ("fox.txt", io.BytesIO(corpus))})
    assert upload.status_code == 201, upload.text
    params = dict(TINY_TEXT, epochs=8, dataset_id=upload.json()["id"])
    job = api.submit("text.train", params, model="s3-text")
    state = f"work/{job['id']}/state.json"
    wait_for(lambda: any(o.key == state for o in store.list(state)), TRAIN_TIMEOUT_S, 0.1)
    restarts = train.child.restarts
    train.kill()  # the host goes away, and its folder with it
    shutil.rmtree(_worker_host(s3stack) / "work" / job["id"], ignore_errors=True)
    train.wait_restarted(restarts)
    trained = api.wait(job["id"], TRAIN_TIMEOUT_S)
    assert trained["status"] == "succeeded", trained
    assert trained["result"]["resumed_from_epoch"] >= 1 and trained["attempts"] >= 2, trained
    text = api.submit("text.generate", {"prompt": "the ", "max_tokens": 20}, model="s3-text")
    done = api.wait(text["id"], 120)
    assert done["status"] == "succeeded" and done["result"]["completion_tokens"] == 20, done
    version = api.get("/v1/models/s3-text").json()["versions"][0]
    stored = api.get(version["artifact_url"])
    assert stored.status_code == 200 and stored.headers["ETag"].strip('"') == version["sha256"]
    # The worker loaded the model from its own host's copy, checked by its checksum.
    assert (_worker_host(s3stack) / "cache" / f"{version['sha256']}.keras").is_file()
    # A finished training job's private files are gone from the bucket.
    assert not list(store.list(f"work/{trained['id']}/"))


@pytest.mark.timeout(TRAIN_TEST_TIMEOUT_S)
def test_an_image_model_trains_and_its_pngs_are_served(s3stack: Stack) -> None:
    api = s3stack.api
    job = api.submit("image.train", TINY_IMAGE, model="s3-image")
    trained = api.wait(job["id"], TRAIN_TIMEOUT_S)
    assert trained["status"] == "succeeded", trained
    images = api.submit("image.generate", {"n": 2, "seed": 1}, model=trained["result"]["model"])
    done = api.wait(images["id"], 120)
    assert done["status"] == "succeeded", done
    for item in done["result"]["images"]:
        png = api.get(item["url"])
        assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
        assert np.asarray(Image.open(io.BytesIO(png.content))).shape == (16, 16)
