"""Retention in-process, on PostgreSQL and SQLite: what expires, what stays, and two sweepers.

Sweeps run with ``now`` set days ahead, so nothing waits; files are real files under the store.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import timedelta

import pytest

from shared.data.retention import SweepReport, sweep
from shared.db import utcnow
from shared.errors import Gone, NotFound
from shared.services import Services
from shared.tables import Artifact, Batch, Job
from shared.tenants.accounts import get_tenant, update_tenant

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
# These run with the artifacts in S3 too; the orphans' ages are set on files, so that one is
# local only (tests/shared/data/test_s3_store.py has the S3 orphans).
WITH_S3 = pytest.mark.parametrize("svc", ["postgres", "embedded", "s3"], indirect=True)


def _tenant(svc: Services, name: str, days: float | None = None) -> uuid.UUID:
    tenant = get_tenant(svc.store.sessions, name=name, create=True)
    if days is not None:
        update_tenant(svc.store.sessions, name=name, retention_days=days)
    return tenant.id


def _job(
    svc: Services,
    tenant: uuid.UUID | None,
    ended_days_ago: float,
    *,
    status: str = "succeeded",
    batch: uuid.UUID | None = None,
) -> tuple[uuid.UUID, Artifact]:
    """Store a job that ended (or runs) with a result and one file; return its id and file."""
    now = utcnow()
    job = Job(
        type="test.sleep",
        params={},
        status=status,
        tenant_id=tenant,
        batch_id=batch,
        result={"text": "x" * 100} if status == "succeeded" else None,
        progress={"step": 1},
        created_at=now - DAY * (ended_days_ago + 1),
        finished_at=now - DAY * ended_days_ago if status != "running" else None,
    )
    with svc.store.sessions() as session:
        session.add(job)
        session.commit()
        job_id = job.id
    artifact = svc.artifacts.save(job_id, "image", "image/png", b"png", ".png", tenant_id=tenant)
    return job_id, artifact


def _get(svc: Services, job_id: uuid.UUID) -> Job:
    job = svc.store.get(job_id)
    assert job is not None
    return job


def _exists(svc: Services, artifact: Artifact) -> bool:
    try:
        svc.artifacts.read_bytes(artifact)
    except NotFound:
        return False
    return True


@WITH_S3
def test_results_and_files_expire_after_their_tenants_retention(svc: Services) -> None:
    short, long = _tenant(svc, "short", days=1), _tenant(svc, "long")
    old, old_file = _job(svc, short, ended_days_ago=2)
    kept, kept_file = _job(svc, long, ended_days_ago=2)
    running, running_file = _job(svc, short, ended_days_ago=0, status="running")
    trained, model_file = _job(svc, short, ended_days_ago=2)
    svc.registry.register(
        name="keep-me",
        kind="text",
        config={},
        artifact_id=model_file.id,
        sha256="0" * 64,
        metrics={},
        job_id=trained,
        tenant_id=short,
    )
    report = sweep(svc.store, svc.artifacts, svc.settings)
    assert report.jobs == 2 and report.artifacts == 1, report  # ``old`` and ``trained``
    job = _get(svc, old)
    assert job.result is None and job.progress is None and job.expired_at is not None
    assert job.status == "succeeded" and job.finished_at is not None
    assert not _exists(svc, old_file)
    with pytest.raises(Gone):
        svc.artifacts.get(old_file.id)
    assert _get(svc, kept).result is not None and _exists(svc, kept_file)
    assert _get(svc, running).expired_at is None and _exists(svc, running_file)
    assert _exists(svc, model_file)  # a model version's file never expires with its job
    assert svc.artifacts.get(model_file.id).id == model_file.id
    # Seven days later the default retention has passed too; nothing is expired twice.
    again = sweep(svc.store, svc.artifacts, svc.settings, now=utcnow() + 7 * DAY)
    assert again.jobs == 1 and again.artifacts == 1 and not _exists(svc, kept_file), again


@WITH_S3
def test_batch_items_expire_with_their_batch(svc: Services) -> None:
    tenant = _tenant(svc, "batcher", days=1)
    batch = Batch(type="test.sleep", item_count=3, tenant_id=tenant, created_at=utcnow() - 5 * DAY)
    with svc.store.sessions() as session:
        session.add(batch)
        session.commit()
        batch_id = batch.id
    items = [_job(svc, tenant, 3, batch=batch_id) for _ in range(2)]
    last, _ = _job(svc, tenant, 0, status="running", batch=batch_id)
    assert (
        sweep(svc.store, svc.artifacts, svc.settings).jobs == 0
    )  # one item still runs: the batch is not over
    with svc.store.sessions() as session:
        row = session.get(Job, last)
        assert row is not None
        row.status, row.finished_at = "succeeded", utcnow()
        session.commit()
    assert sweep(svc.store, svc.artifacts, svc.settings).jobs == 0  # over, but only just
    report = sweep(svc.store, svc.artifacts, svc.settings, now=utcnow() + 2 * DAY)
    assert report.batches == 1 and report.jobs == 3 and report.artifacts == 3, report
    assert all(_get(svc, i).result is None for i, _ in items)
    assert not any(_exists(svc, f) for _, f in items)


def test_orphan_files_go_once_past_the_grace_and_never_a_live_jobs(svc: Services) -> None:
    tenant = _tenant(svc, "orphans")
    ended, claimed = _job(svc, tenant, 0)
    running, _ = _job(svc, tenant, 0, status="running")
    root, long_ago = svc.artifacts.store.root, time.time() - 2 * DAY.total_seconds()

    def orphan(folder: str, name: str, old: bool = True) -> os.PathLike[str]:
        path = root / "jobs" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind by a crashed attempt")
        if old:
            os.utime(path, (long_ago, long_ago))
        return path

    gone = [orphan(str(ended), f"{uuid.uuid4()}.png"), orphan(str(ended), ".tmp-abc")]
    kept = [
        orphan(str(ended), f"{uuid.uuid4()}.png", old=False),  # within the grace
        orphan(str(running), f"{uuid.uuid4()}.png"),  # a running job's folder
        orphan("shared", f"{uuid.uuid4()}.keras"),  # not a job's folder
    ]
    os.utime(root / svc.artifacts.key_of(claimed.uri), (long_ago, long_ago))
    workdir = root / "work" / str(uuid.uuid4())  # a job that no longer exists
    workdir.mkdir(parents=True)
    os.utime(workdir, (long_ago, long_ago))
    report = sweep(svc.store, svc.artifacts, svc.settings)
    assert report.orphan_files == 2 and report.orphan_folders == 1, report
    assert not any(os.path.exists(p) for p in gone) and not workdir.exists()
    assert all(os.path.exists(p) for p in kept)
    assert _exists(svc, claimed)


@WITH_S3
def test_two_sweepers_at_once_expire_each_job_once(svc: Services) -> None:
    tenant = _tenant(svc, "busy", days=1)
    files = [_job(svc, tenant, 2)[1] for _ in range(120)]
    reports: list[SweepReport] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        reports.append(sweep(svc.store, svc.artifacts, svc.settings))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(reports) == 2, "a sweeper failed"
    assert sum(r.jobs for r in reports) == 120 and sum(r.artifacts for r in reports) == 120
    assert not any(_exists(svc, f) for f in files)
