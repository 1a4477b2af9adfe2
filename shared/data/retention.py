"""Retention: results and files expire after their tenant's retention; orphan files go too.

A sweep (``aigc gc``, and the reconciler every ``AIGC_RETENTION_SWEEP_S``) works in pages of
``AIGC_GC_PAGE`` rows. Every step is a conditional UPDATE that returns the rows it changed, so
several sweepers (one per host) can run at once: each row is expired by exactly one of them,
and only that one deletes its files, after its transaction committed. A job expires once it
ended more than its tenant's ``retention_days`` ago; a batch's items expire with their batch.
The row keeps its status and timestamps; its result, progress and files go. Files of model
versions and datasets never expire here.

Orphans are files no live artifact row claims (an attempt that crashed between writing a file
and committing its row), and the private folders of expired or vanished jobs. They are removed
once older than ``AIGC_ORPHAN_GRACE_S``, and never inside the folder of a job still queued or
running.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, case, func, select, update

from shared.data.artifacts import workdir_of
from shared.db import utcnow
from shared.jobs.status import TERMINAL
from shared.tables import Artifact, Batch, Dataset, Job, ModelVersion, Tenant

if TYPE_CHECKING:
    from shared.services import Services

ENDED = [str(s) for s in TERMINAL]
MAX_PAGES = 20  # pages of jobs one sweep expires per selection: the next sweep goes on


@dataclass
class SweepReport:
    """What one sweep expired and removed."""

    jobs: int = 0
    batches: int = 0
    artifacts: int = 0
    orphan_files: int = 0
    orphan_folders: int = 0

    def add(self, other: SweepReport) -> None:
        """Add another report's counts to this one."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def sweep(services: Services, *, now: datetime | None = None) -> SweepReport:
    """Expire what is past its retention and remove orphans; return what was done."""
    now = now or utcnow()
    report = SweepReport()
    for tenant_id, cutoff in _cutoffs(services, now):
        report.batches += _expire_batches(services, tenant_id, cutoff, now)
        owned = Job.tenant_id == tenant_id if tenant_id else Job.tenant_id.is_(None)
        single = and_(
            owned, Job.batch_id.is_(None), Job.expired_at.is_(None), Job.finished_at < cutoff
        )
        report.add(_expire_jobs(services, single, now))
    expired_batches = select(Batch.id).where(Batch.expired_at.is_not(None))
    items = and_(Job.batch_id.in_(expired_batches), Job.expired_at.is_(None))
    report.add(_expire_jobs(services, items, now))
    report.add(remove_orphans(services, now=now))
    return report


def _cutoffs(services: Services, now: datetime) -> Iterator[tuple[uuid.UUID | None, datetime]]:
    """Yield each tenant (None: the system's own jobs) with the time before which things expire."""
    default = services.settings.retention_days
    with services.store.sessions() as session:
        tenants = session.execute(select(Tenant.id, Tenant.retention_days)).all()
    yield None, now - timedelta(days=default)
    for tenant_id, days in tenants:
        yield tenant_id, now - timedelta(days=days or default)


def _expire_batches(
    services: Services, tenant_id: uuid.UUID | None, cutoff: datetime, now: datetime
) -> int:
    """Mark the tenant's batches whose every item ended before ``cutoff`` as expired."""
    owned = Batch.tenant_id == tenant_id if tenant_id else Batch.tenant_id.is_(None)
    live = func.sum(case((Job.status.in_(ENDED), 0), else_=1))
    done = (
        select(Job.batch_id)
        .join(Batch, Batch.id == Job.batch_id)
        # A batch cannot end before it began: only old batches are grouped at all.
        .where(owned, Batch.expired_at.is_(None), Batch.created_at < cutoff)
        .group_by(Job.batch_id)
        .having(live == 0, func.max(Job.finished_at) < cutoff)
        .limit(services.settings.gc_page)
    )
    stmt = (
        update(Batch)
        .where(Batch.id.in_(done), Batch.expired_at.is_(None))
        .values(expired_at=now)
        .returning(Batch.id)
    )
    with services.store.sessions() as session:
        expired = session.scalars(stmt).all()
        session.commit()
    return len(expired)


def _expire_jobs(services: Services, which: ColumnElement[bool], now: datetime) -> SweepReport:
    """Expire matching jobs page by page, then their artifacts' files and private folders."""
    report = SweepReport()
    for _ in range(MAX_PAGES):
        page = select(Job.id).where(which, Job.status.in_(ENDED)).limit(services.settings.gc_page)
        stmt = (
            update(Job)
            .where(Job.id.in_(page), Job.expired_at.is_(None))
            .values(expired_at=now, result=None, progress=None, version=Job.version + 1)
            .returning(Job.id)
        )
        with services.store.sessions() as session:
            ids = list(session.scalars(stmt).all())
            session.commit()
        if not ids:
            break
        report.jobs += len(ids)
        report.artifacts += _expire_artifacts(services, ids, now)
        services.store.forget(ids)  # the status cache must not serve the dropped result
        for job_id in ids:
            shutil.rmtree(workdir_of(services.settings.artifact_dir, job_id), ignore_errors=True)
    return report


def _expire_artifacts(services: Services, job_ids: list[uuid.UUID], now: datetime) -> int:
    """Mark the jobs' artifacts expired (not models' or datasets' files); delete their files."""
    kept = select(ModelVersion.artifact_id).union(select(Dataset.artifact_id))
    stmt = (
        update(Artifact)
        .where(
            Artifact.job_id.in_(job_ids),
            Artifact.expired_at.is_(None),
            Artifact.id.not_in(kept),
        )
        .values(expired_at=now)
        .returning(Artifact.uri)
    )
    with services.store.sessions() as session:
        uris = session.scalars(stmt).all()
        session.commit()
    for uri in uris:  # only after the commit: a failed sweep leaves an orphan, never a hole
        services.artifacts.path_of(uri).unlink(missing_ok=True)
    return len(uris)


def remove_orphans(services: Services, *, now: datetime | None = None) -> SweepReport:
    """Remove files no live artifact claims and folders of gone jobs, once past the grace."""
    report = SweepReport()
    old = time.time() - services.settings.orphan_grace_s
    root = services.artifacts.root
    folders = [p for p in (root / "jobs").glob("*") if p.is_dir()]
    live = _live_jobs(services, [p.name for p in folders])
    for folder in folders:
        if folder.name in live:
            continue  # a queued or running job's files are never touched
        report.orphan_files += _remove_unclaimed(services, folder, old)
    workdirs = [p for p in workdir_of(root).glob("*") if p.is_dir()]
    kept = _live_jobs(services, [p.name for p in workdirs], include_unexpired=True)
    for folder in workdirs:
        if folder.name not in kept and folder.stat().st_mtime < old:
            shutil.rmtree(folder, ignore_errors=True)
            report.orphan_folders += 1
    return report


def _remove_unclaimed(services: Services, folder: Path, old: float) -> int:
    """Remove the old files of a folder whose name no live artifact row has; return how many."""
    files = [p for p in folder.iterdir() if p.is_file() and p.stat().st_mtime < old]
    removed = 0
    for start in range(0, len(files), services.settings.gc_page):
        page = files[start : start + services.settings.gc_page]
        claimed = _claimed(services, [_artifact_id(p) for p in page])
        for path in page:
            if _artifact_id(path) not in claimed:  # a temporary file's id is None: unclaimed
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _artifact_id(path: Path) -> uuid.UUID | None:
    try:
        return uuid.UUID(path.name.split(".", 1)[0])
    except ValueError:
        return None


def _claimed(services: Services, ids: list[uuid.UUID | None]) -> set[uuid.UUID]:
    wanted = [i for i in ids if i is not None]
    with services.store.sessions() as session:
        rows = session.scalars(
            select(Artifact.id).where(Artifact.id.in_(wanted), Artifact.expired_at.is_(None))
        )
        return set(rows)


def _live_jobs(services: Services, names: list[str], include_unexpired: bool = False) -> set[str]:
    """Return which of the folder names are jobs still queued or running (or, if asked, any
    job not expired); a name that is not a job id (``shared``) counts as live: never touched."""
    ids: dict[str, Any] = {}
    live = set()
    for name in names:
        try:
            ids[name] = uuid.UUID(name)
        except ValueError:
            live.add(name)
    keep = Job.expired_at.is_(None) if include_unexpired else Job.status.not_in(ENDED)
    values, size = list(ids.values()), services.settings.gc_page
    with services.store.sessions() as session:
        for start in range(0, len(values), size):
            page = values[start : start + size]
            live |= {str(i) for i in session.scalars(select(Job.id).where(Job.id.in_(page), keep))}
    return live
