"""The artifact store on S3, in-process against a real S3-protocol server (moto's, a process).

Round trips, local copies of model files, checkpoints moving between hosts, presigned URLs that
expire, orphans in the bucket, and what an unreachable server looks like.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pydantic import ValidationError

from shared.config import Settings
from shared.data.artifacts import ArtifactStore
from shared.data.retention import remove_orphans
from shared.data.stores import open_store
from shared.data.stores.local import LocalStore
from shared.db import utcnow
from shared.errors import NotFound, StorageUnavailable
from shared.services import Services
from shared.tables import Job
from tests.s3server import S3Server
from tests.support import wait_for

pytestmark = pytest.mark.integration

ON_S3 = pytest.mark.parametrize("svc", ["s3"], indirect=True)  # PostgreSQL, files in S3

MB = 1024 * 1024


def _bucket_keys(svc: Services, s3_server: S3Server) -> set[str]:
    """Return every key of the store's bucket, read behind the store's back."""
    store = svc.artifacts.store
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _job(svc: Services, status: str) -> uuid.UUID:
    job = Job(type="test.sleep", params={}, status=status, finished_at=utcnow())
    with svc.store.sessions() as session:
        session.add(job)
        session.commit()
        return job.id


@ON_S3
def test_files_round_trip_and_stream_in_chunks(svc: Services, s3_server: S3Server) -> None:
    data = bytes(range(256)) * (3 * MB // 256)  # 3 MiB: several chunks
    row = svc.artifacts.save(None, "image", "image/png", data, ".png")
    assert row.uri.startswith("s3:jobs/shared/") and row.size == len(data)
    assert f"artifacts/{row.uri.removeprefix('s3:')}" in _bucket_keys(svc, s3_server)
    assert svc.artifacts.read_bytes(svc.artifacts.get(row.id)) == data
    body, chunks = svc.artifacts.open(row), []
    while chunk := body.read(256 * 1024):
        chunks.append(chunk)
    body.close()
    assert len(chunks) >= 12 and b"".join(chunks) == data
    svc.artifacts.delete(row.uri)
    with pytest.raises(NotFound):
        svc.artifacts.open(row)
    with pytest.raises(NotFound):
        svc.artifacts.get(uuid.uuid4())


@ON_S3
def test_a_model_file_is_copied_to_the_host_once_and_checked(svc: Services) -> None:
    data = b"a .keras file" * 1000
    row = svc.artifacts.save(None, "model", "application/octet-stream", data, ".keras")
    path = svc.artifacts.local_copy(row)
    assert path.read_bytes() == data and path.name == f"{row.sha256}.keras"
    assert path.is_relative_to(svc.settings.artifact_dir)
    svc.artifacts.delete(row.uri)  # gone from the store: the host's copy still serves
    assert svc.artifacts.local_copy(row) == path
    forged = svc.artifacts.save(None, "model", "application/octet-stream", b"evil", ".keras")
    forged.sha256 = hashlib.sha256(b"what the registry recorded").hexdigest()
    with pytest.raises(StorageUnavailable, match="checksum"):
        svc.artifacts.local_copy(forged)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # nothing half-kept


@ON_S3
def test_checkpoints_move_between_hosts(svc: Services, tmp_path) -> None:
    job_id = uuid.uuid4()
    here = svc.artifacts
    there = ArtifactStore(
        here.store, here.sessions, tmp_path / "other-host", cache_bytes=MB, presign_ttl_s=60
    )
    (here.workdir(job_id) / "checkpoint.keras").write_bytes(b"weights")
    (here.workdir(job_id) / "state.json").write_text('{"epoch": 3}')
    here.push_work(job_id, ["checkpoint.keras", "state.json"])
    folder = there.pull_work(job_id)
    assert folder != here.workdir(job_id)
    assert (folder / "checkpoint.keras").read_bytes() == b"weights"
    assert (folder / "state.json").read_text() == '{"epoch": 3}'
    there.discard_work(job_id)
    assert not folder.exists() and not list(here.store.list(f"work/{job_id}/"))


@ON_S3
def test_a_presigned_url_works_until_its_ttl_then_is_refused(svc: Services) -> None:
    ttl_s = 2
    short = ArtifactStore(
        svc.artifacts.store,
        svc.artifacts.sessions,
        svc.settings.artifact_dir,
        cache_bytes=MB,
        presign_ttl_s=ttl_s,
    )
    row = svc.artifacts.save(None, "image", "image/png", b"\x89PNG pixels", ".png")
    url = short.presigned_url(row)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == [str(ttl_s)] and "X-Amz-Signature" in query
    fresh = requests.get(url, timeout=10)
    assert fresh.status_code == 200 and fresh.content == b"\x89PNG pixels"
    assert fresh.headers["Content-Type"] == "image/png"

    def refused() -> list[requests.Response]:
        resp = requests.get(url, timeout=10)
        return [] if resp.status_code == 200 else [resp]

    (expired,) = wait_for(refused, 30, 0.25, "the presigned URL to expire")
    assert expired.status_code == 403 and b"expired" in expired.content


@ON_S3
def test_orphans_in_the_bucket_go_after_the_grace_never_a_live_jobs(svc: Services) -> None:
    store = svc.artifacts.store
    ended, running = _job(svc, "succeeded"), _job(svc, "running")
    claimed = svc.artifacts.save(ended, "image", "image/png", b"kept", ".png")
    gone = [f"jobs/{ended}/{uuid.uuid4()}.png", f"jobs/{ended}/.tmp-abc"]
    kept = [f"jobs/{running}/{uuid.uuid4()}.png", f"jobs/shared/{uuid.uuid4()}.keras"]
    vanished, live = f"work/{uuid.uuid4()}/state.json", f"work/{running}/state.json"
    for key in [*gone, *kept, vanished, live]:
        store.put(key, b"left behind by a crashed attempt")
    assert (
        remove_orphans(svc.store, svc.artifacts, svc.settings).orphan_files == 0
    )  # all within the grace
    report = remove_orphans(
        svc.store, svc.artifacts, svc.settings, now=utcnow() + timedelta(days=2)
    )
    assert report.orphan_files == 2 and report.orphan_folders == 1, report
    keys = {o.key for o in store.list("")}
    assert keys == {claimed.uri.removeprefix("s3:"), *kept, live}


def test_an_unreachable_server_is_a_retryable_error(tmp_path) -> None:
    settings = Settings(
        artifact_dir=tmp_path,
        artifact_url="s3://nowhere/x",
        s3_endpoint_url="http://127.0.0.1:9",  # the discard port: nothing listens
        s3_access_key_id="k",
        s3_secret_access_key="s",
    )
    with pytest.raises(StorageUnavailable):
        open_store(settings).put("jobs/a.txt", b"x")


@pytest.mark.parametrize(
    "values, wrong",
    [
        ({"artifact_url": "s3:///prefix"}, "needs a bucket"),
        ({"artifact_url": "s3://bucket/../up"}, "plain path"),
        ({"artifact_url": "file://host/folder"}, "three slashes"),
        ({"artifact_url": "file:relative"}, "three slashes"),
        ({"artifact_url": "https://bucket.example/x"}, "file:///folder or s3://"),
        ({"artifact_serve": "redirect"}, "needs an s3:// artifact_url"),
        ({"artifact_url": "s3://b", "s3_access_key_id": "k"}, "both"),
        ({"artifact_presign_ttl_s": 604_801}, "less than or equal"),
    ],
)
def test_storage_settings_refuse_what_cannot_work(values: dict, wrong: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(wrong)):
        Settings(**values)


def test_storage_settings_name_a_folder_or_a_bucket(tmp_path) -> None:
    assert isinstance(open_store(Settings(artifact_dir=tmp_path)), LocalStore)
    folder = open_store(Settings(artifact_url=f"file://{tmp_path}/store"))
    assert isinstance(folder, LocalStore) and folder.root == tmp_path / "store"
    bucket = open_store(Settings(artifact_url="s3://b/a/b/", artifact_serve="redirect"))
    assert (bucket.bucket, bucket.prefix) == ("b", "a/b/")
