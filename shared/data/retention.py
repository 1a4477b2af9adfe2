"""Retention: results and files expire after their tenant's retention; orphan files go too.

A sweep (``aigc gc``, and the reconciler every ``AIGC_RETENTION_SWEEP_S``) works in pages of
``AIGC_GC_PAGE`` rows. Every step is a conditional UPDATE that returns the rows it changed, so
several sweepers (one per host) can run at once: each row is expired by exactly one of them,
and only that one deletes its files, after its transaction committed. A job expires once it
ended more than its tenant's ``retention_days`` ago; a batch's items expire with their batch.
The row keeps its status and timestamps; its result, progress and files go. Files of model
versions and datasets never expire here.

Orphans are files no live artifact row claims (an attempt that crashed between writing a file
and committing its row), and the private files of expired or vanished jobs. They are removed
once older than ``AIGC_ORPHAN_GRACE_S``, and never inside the folder of a job still queued or
running. They are found by listing the store (a folder, or the keys of an S3 prefix with their
last-modified times) page by page, and this host's scratch folder of private files.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select, update

from shared.config import Settings
from shared.data.artifacts import WORK, ArtifactStore, workdir_of
from shared.db import utcnow
from shared.jobs.status import TERMINAL
from shared.jobs.store import JobStore
from shared.tables import Artifact, Batch, Dataset, Job, ModelVersion, Tenant

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


@dataclass(frozen=True)
class _Sweep:
    """What a sweep reads and changes: the job rows (and their cache), the files, the limits."""

    store: JobStore
    artifacts: ArtifactStore
    settings: Settings


def sweep(
    store: JobStore, artifacts: ArtifactStore, settings: Settings, *, now: datetime | None = None
) -> SweepReport:
    """Expire what is past its retention and remove orphans; return what was done."""
    ports = _Sweep(store, artifacts, settings)
    now = now or utcnow()
    report = SweepReport()
    for tenant_id, cutoff in _cutoffs(ports, now):
        report.batches += _expire_batches(ports, tenant_id, cutoff, now)
        owned = Job.tenant_id == tenant_id if tenant_id else Job.tenant_id.is_(None)
        single = and_(
            owned, Job.batch_id.is_(None), Job.expired_at.is_(None), Job.finished_at < cutoff
        )
        report.add(_expire_jobs(ports, single, now))
    expired_batches = select(Batch.id).where(Batch.expired_at.is_not(None))
    items = and_(Job.batch_id.in_(expired_batches), Job.expired_at.is_(None))
    report.add(_expire_jobs(ports, items, now))
    report.add(_remove_orphans(ports, now))
    return report


def _cutoffs(ports: _Sweep, now: datetime) -> Iterator[tuple[uuid.UUID | None, datetime]]:
    """Yield each tenant (None: the system's own jobs) with the time before which things expire."""
    default = ports.settings.retention_days
    with ports.store.sessions() as session:
        tenants = session.execute(select(Tenant.id, Tenant.retention_days)).all()
    yield None, now - timedelta(days=default)
    for tenant_id, days in tenants:
        yield tenant_id, now - timedelta(days=days or default)


def _expire_batches(
    ports: _Sweep, tenant_id: uuid.UUID | None, cutoff: datetime, now: datetime
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
        .limit(ports.settings.gc_page)
    )
    stmt = (
        update(Batch)
        .where(Batch.id.in_(done), Batch.expired_at.is_(None))
        .values(expired_at=now)
        .returning(Batch.id)
    )
    with ports.store.sessions() as session:
        expired = session.scalars(stmt).all()
        session.commit()
    return len(expired)


def _expire_jobs(ports: _Sweep, which: ColumnElement[bool], now: datetime) -> SweepReport:
    """Expire matching jobs page by page, then their artifacts' files."""
    report = SweepReport()
    for _ in range(MAX_PAGES):
        page = select(Job.id).where(which, Job.status.in_(ENDED)).limit(ports.settings.gc_page)
        stmt = (
            update(Job)
            .where(Job.id.in_(page), Job.expired_at.is_(None))
            .values(expired_at=now, result=None, progress=None, version=Job.version + 1)
            .values(items=None, item_results=None)  # a chunk's items and result lines
            .returning(Job.id)
        )
        with ports.store.sessions() as session:
            ids = list(session.scalars(stmt).all())
            session.commit()
        if not ids:
            break
        report.jobs += len(ids)
        report.artifacts += _expire_artifacts(ports, ids, now)
        ports.store.forget(ids)  # the status cache must not serve the dropped result
        # Their private files go with the orphans: one listing of the store's work/, not a
        # request per job (most jobs have none).
    return report


def _expire_artifacts(ports: _Sweep, job_ids: list[uuid.UUID], now: datetime) -> int:
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
    with ports.store.sessions() as session:
        uris = session.scalars(stmt).all()
        session.commit()
    for uri in uris:  # only after the commit: a failed sweep leaves an orphan, never a hole
        ports.artifacts.delete(uri)
    return len(uris)


def remove_orphans(
    store: JobStore, artifacts: ArtifactStore, settings: Settings, *, now: datetime | None = None
) -> SweepReport:
    """Remove files no live artifact claims and private files of gone jobs, once past the grace."""
    return _remove_orphans(_Sweep(store, artifacts, settings), now or utcnow())


def _remove_orphans(ports: _Sweep, now: datetime) -> SweepReport:
    old = now.timestamp() - ports.settings.orphan_grace_s
    return SweepReport(
        orphan_files=_remove_unclaimed(ports, old), orphan_folders=_remove_workdirs(ports, old)
    )


def _remove_unclaimed(ports: _Sweep, old: float) -> int:
    """Remove the files under ``jobs/`` older than ``old`` that no live artifact row claims,
    page by page of the store's listing, never in the folder of a queued or running job."""
    store, removed = ports.artifacts.store, 0
    listing = store.list("jobs/")
    while page := list(islice(listing, ports.settings.gc_page)):
        candidates = [o for o in page if o.modified < old]
        live = _live_jobs(ports, list({_folder(o.key) for o in candidates}))
        candidates = [o for o in candidates if _folder(o.key) not in live]
        claimed = _claimed(ports, [_artifact_id(o.key) for o in candidates])
        for obj in candidates:
            if _artifact_id(obj.key) not in claimed:  # a temporary file's id is None: unclaimed
                store.delete(obj.key)
                removed += 1
    return removed


def _remove_workdirs(ports: _Sweep, old: float) -> int:
    """Remove the private files of expired or vanished jobs, in the store and in this host's
    scratch, once nothing in them was written since ``old``; return how many jobs' went."""
    newest: dict[str, float] = {}
    for obj in ports.artifacts.store.list(f"{WORK}/"):
        name = _folder(obj.key)
        newest[name] = max(newest.get(name, 0.0), obj.modified)
    for folder in workdir_of(ports.artifacts.scratch).glob("*"):
        if folder.is_dir():
            newest[folder.name] = max(newest.get(folder.name, 0.0), folder.stat().st_mtime)
    kept = _live_jobs(ports, list(newest), include_unexpired=True)
    gone = [name for name, modified in newest.items() if name not in kept and modified < old]
    for name in gone:  # not kept: a job id (any other name counts as live)
        ports.artifacts.discard_work(uuid.UUID(name))
    return len(gone)


def _folder(key: str) -> str:
    """Return the folder a key lies in under its top level (``jobs/<folder>/…``)."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 else ""


def _artifact_id(key: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(key.rsplit("/", 1)[-1].split(".", 1)[0])
    except ValueError:
        return None


def _claimed(ports: _Sweep, ids: list[uuid.UUID | None]) -> set[uuid.UUID]:
    wanted = [i for i in ids if i is not None]
    with ports.store.sessions() as session:
        rows = session.scalars(
            select(Artifact.id).where(Artifact.id.in_(wanted), Artifact.expired_at.is_(None))
        )
        return set(rows)


def _live_jobs(ports: _Sweep, names: list[str], include_unexpired: bool = False) -> set[str]:
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
    values, size = list(ids.values()), ports.settings.gc_page
    with ports.store.sessions() as session:
        for start in range(0, len(values), size):
            page = values[start : start + size]
            live |= {str(i) for i in session.scalars(select(Job.id).where(Job.id.in_(page), keep))}
    return live
