"""A job's artifacts across attempts: its success keeps its own attempt's, and no lost one's."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from shared.data.retention import remove_orphans
from shared.db import utcnow
from shared.delivery.reconciler import reconcile_once
from shared.jobs.status import JobStatus
from shared.services import Services
from shared.tables import Artifact, Job
from worker.context import JobContext, Ports

pytestmark = pytest.mark.integration


def _attempt(svc: Services, job_id: uuid.UUID, token: str) -> JobContext:
    (job,) = svc.store.claim(
        [job_id],
        token,
        lease_s=30,
        time_limits={},
        default_limit_s=600,
        running_cap=svc.settings.tenant_max_running,
    )
    ports = Ports(svc.settings, svc.store, svc.artifacts, svc.registry, None, _no_model)
    return JobContext(job, ports)


def _no_model(ref: str | None, kind: str) -> Any:
    raise AssertionError("these jobs load no model")


def _save_both_ways(ctx: JobContext, name: str) -> None:
    """Save one artifact recorded at once (as a progress image is) and one with the success."""
    ctx.save_artifact("progress", "text/plain", f"{name} now".encode(), ".txt")
    ctx.save_artifact("result", "text/plain", f"{name} at the end".encode(), ".txt", defer=True)


def _lose_claim(svc: Services, job_id: uuid.UUID) -> None:
    with svc.store.sessions() as session:
        past = utcnow() - timedelta(seconds=1)
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))
        session.commit()
    assert reconcile_once(svc.store, svc.publisher, svc.settings).requeued == 1


def _rows(svc: Services, job_id: uuid.UUID) -> dict[uuid.UUID, str]:
    with svc.store.sessions() as session:
        rows = session.execute(select(Artifact.id, Artifact.uri).where(Artifact.job_id == job_id))
        return dict(rows.tuples().all())


def test_a_success_keeps_its_own_attempts_artifacts_only(svc: Services) -> None:
    (job,) = svc.store.create([Job(type="test.sleep", params={}, max_attempts=3)])
    lost = _attempt(svc, job.id, "h:1:aaaa")
    _save_both_ways(lost, "lost")
    # A version the lost attempt registered stays, with its file: the model refers to it.
    (versioned,) = lost.recorded_artifacts
    lost.save_artifact("model", "application/octet-stream", b"weights", ".keras")
    model_file = lost.recorded_artifacts[-1]
    svc.registry.register(
        name="lost-attempt-model",
        kind="text",
        config={},
        artifact_id=model_file,
        sha256="0" * 64,
        metrics={},
        job_id=job.id,
        job_epochs=1,
    )
    _lose_claim(svc, job.id)

    won = _attempt(svc, job.id, "h:2:bbbb")
    _save_both_ways(won, "won")
    done = svc.store.succeed(
        won.token, job.id, {}, won.pending_artifacts, kept=won.recorded_artifacts
    )
    assert done is not None and done.status == JobStatus.SUCCEEDED

    rows = _rows(svc, job.id)
    ours = {*won.recorded_artifacts, *(a.id for a in won.pending_artifacts)}
    assert set(rows) == ours | {model_file}, f"the lost attempt's {versioned} stayed"
    # The lost attempt's files (the one recorded and the one never recorded) are orphans now.
    remove_orphans(
        svc.store,
        svc.artifacts,
        svc.settings,
        now=utcnow() + timedelta(seconds=svc.settings.orphan_grace_s + 60),
    )
    keys = {obj.key for obj in svc.artifacts.store.list(f"jobs/{job.id}/")}
    assert keys == {svc.artifacts.key_of(uri) for uri in rows.values()}
